"""Every default of vrstyle in one place, so the CLI, pipeline and tests agree; sizes with
the one parser that reads them from the command line."""

from __future__ import annotations

import re

from vrstyle.errors import VrstyleError

# Tiling (see the tiles library for the terms).
TILE = 512
"""Largest tile core, px."""
HALO = 56
"""Context beyond the overlap: >= 54 px (half the standard net's 109 px receptive field),
rounded to the stride, makes tiled output equal whole-image output."""
OVERLAP = 16
"""Band blended with each neighbour, px; the safety net for smaller halos."""
ALIGN = 4
"""Tile cores are multiples of the networks' total stride."""
RAMP = "linear"
"""Feather ramp across the overlap band ("linear" or "cosine")."""

# Normalisation statistics.
STATS_TILES = 8
"""Tiles sampled over an image to measure its statistics at full resolution."""
STATS_MOMENTUM = 0.8
"""Weight of the past in the per-stream moving average of frame statistics."""

# Inference.
BATCH_TILES = 4
"""Most tiles per forward pass in single-image stylisation (the memory budget may allow fewer)."""
STYLIZE_MEMORY_GB = 2.0
"""Memory budget of single-image stylisation in this process: the whole image in one pass when
it fits (no halo, statistics in the same pass), else tiles, as many per pass as fit."""
FORWARD_BYTES_PER_PIXEL = 700
"""Peak memory of one fp32 CPU forward pass per input pixel, beyond the loaded model: measured
470-500 B for candy's teacher and two-base binary student at 2-3 megapixels, 500-1070 B at
512x512 (one-time allocations, kernel compilation among them, weigh more there)."""

# Models.
DEFAULT_STYLE = "candy"
DATA_ENV = "VRSTYLE_DATA"
"""Environment variable naming the shared data folder (teachers, VGG, photos)."""

# Transport (protocol constants, heartbeats and size limits are in vrstyle.transport.protocol).
BROKER_CLIENTS = "tcp://127.0.0.1:5555"
"""Where the broker listens for clients (loopback: no keys needed)."""
BROKER_WORKERS = "tcp://127.0.0.1:5556"
"""Where the broker listens for workers."""
BROKER_MAX_QUEUE = 4096
"""Requests waiting for a worker beyond which the broker refuses new ones."""
WORKER_CREDIT = 2
"""Requests a worker holds at once: one computing, one arriving."""
BATCH_WINDOW_S = 0.001
"""How long a worker waits for more requests to share a forward pass with the first."""
WORKER_BATCH_TILES = 16
"""Most tiles in one forward pass of a worker."""
CONNECT_TIMEOUT_S = 10.0
"""How long a client waits for the broker's first answer."""

# Frame pipeline.
REQUEST_TILES = 2
"""Tiles per request: small enough to spread a frame over several workers."""
RING_REQUESTS = 4
"""Requests per frame on the shared-memory frame ring (each names its tiles by index), unless
``request_tiles`` asks for larger ones: a few per frame, one or more per worker."""
FRAME_DEADLINE_S = 0.1
"""Seconds after submission when a frame's missing tiles are filled from the previous frame."""
PIPELINE_DEPTH = 2
"""Frames in flight at once; submitting more drops the oldest."""
STYLIZE_INFLIGHT = 8
"""Requests in flight while stylising one image (keeps every worker busy)."""
STYLIZE_STALL_S = 300.0
WORKER_CHECK_S = 1.0
"""How long a single-image client waits for replies before it asks the broker whether any worker
still serves its style (a dead worker is noticed within three heartbeats)."""
WORKER_WAIT_S = 30.0
"""How long a single-image client waits, saying so, for a worker of its style to come back
(``vrstyle workers`` restarts the ones that exit) before it gives up."""
"""Single-image stylisation gives up when no tile has come back for this long."""

# Eye sizes: (height, width) in code, WIDTHxHEIGHT on the command line.
EYE_PRESETS = {"quest3": (2208, 2064), "quest2": (1920, 1832), "index": (1600, 1440), "vivepro2": (2448, 2448)}
"""Per-eye buffer (height, width) of headsets, as their runtimes recommend."""


def parse_size(text: str, option: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` -> (height, width): every size on the command line is written W x H.

    >>> parse_size("656x528", "--warmup")
    (528, 656)
    """
    match = re.fullmatch(r"(\d+)x(\d+)", text.lower().replace(" ", ""))
    if match is None:
        raise VrstyleError(f"{option} takes WIDTHxHEIGHT such as 656x656, got {text!r}")
    width, height = (int(group) for group in match.groups())
    if width < 1 or height < 1:
        raise VrstyleError(f"{option} must be positive, got {text!r}")
    return height, width


def parse_eye(text: str) -> tuple[str, tuple[int, int]]:
    """A headset preset or WIDTHxHEIGHT -> (name, (height, width)).

    >>> parse_eye("quest3")
    ('quest3', (2208, 2064))
    >>> parse_eye("96x80")
    ('96x80', (80, 96))
    """
    key = text.lower().replace(" ", "")
    if key in EYE_PRESETS:
        return key, EYE_PRESETS[key]
    if re.fullmatch(r"\d+x\d+", key) is None:
        raise VrstyleError(f"unknown eye preset {text!r}; use {', '.join(EYE_PRESETS)} or WIDTHxHEIGHT "
                           "such as 2064x2208")
    height, width = parse_size(key, "eye size")
    if width < 16 or height < 16:
        raise VrstyleError(f"eye size {text} is too small (at least 16x16)")
    return text, (height, width)


# Headless benchmark (vrstyle bench).
BENCH_EYE = "quest3"
BENCH_FRAMES = 20
"""Frames timed per configuration."""
BENCH_WARMUP = 2
"""Frames run before timing (the first has no statistics yet; workers settle)."""
BENCH_SYNTHETIC_FRAMES = 8
"""Distinct frames of the synthetic source, made ahead and cycled so making them costs no time."""
BENCH_NAME = "tile-throughput"
"""Stem of the benchmark's JSON, Markdown and PNG files."""

# OpenGL: compositor, demo scene, mirror window.
GL_VERSION = (3, 3)
"""Oldest OpenGL core profile the shaders need (they are GLSL 3.30)."""
EYE_SIZE = (720, 640)
"""Eye buffer (height, width) of the demo scene and the largest size image sources are fitted to."""
IPD_M = 0.064
"""Interpupillary distance of the demo scene's eyes, metres."""
FOV_Y_DEG = 80.0
"""Vertical field of view of the demo scene's eyes when no headset gives one, degrees."""
SCENE_SAMPLES = 4
"""Multisampling of the demo scene (0 for none)."""
PHOTO_SECONDS = 8.0
"""How long a folder slideshow shows each photo before the next."""
CONSISTENCY = ("off", "stereo", "temporal", "both")
"""Consistency from depth (mirror, headset): the right eye takes the left eye's strokes (stereo),
each frame carries the previous one's over (temporal), or both."""


def stereo_consistent(consistency: str) -> bool:
    """Whether a :data:`CONSISTENCY` mode gives the right eye the left eye's strokes."""
    return consistency in ("stereo", "both")


def temporal_consistent(consistency: str) -> bool:
    """Whether a :data:`CONSISTENCY` mode carries each frame's strokes over to the next."""
    return consistency in ("temporal", "both")


CARRIED = 0.9
"""Temporal consistency: the previous frame's share where it reprojects onto the same surface
(the fresh stylisation keeps the rest): strokes stay on surfaces and fade over a few frames (to
a tenth in 22 frames, a quarter of a second at 90 Hz). Measured against 0.8 (benchmarks/comfort.py):
consecutive frames' warp error about 0.6x, at some softening (strokes that differ from frame to
frame are averaged); beyond 0.95 strokes on a surface hardly ever renew and moving objects,
which the head's pose change does not reproject, leave longer trails."""


def check_carry(share: float | str) -> float:
    """A temporal consistency share (:data:`CARRIED`'s kind): a number in (0, 1], or one clear error.

    >>> check_carry("0.95")
    0.95
    """
    try:
        value = float(share)
    except (TypeError, ValueError):
        raise VrstyleError(f"carried share must be a number in (0, 1], got {share!r}") from None
    if not 0 < value <= 1:
        raise VrstyleError(f"carried share must be in (0, 1], got {share}")
    return value

# Headset (OpenXR client).
XR_APP_NAME = "vrstyle"
XR_PIPELINE_DEPTH = 1
"""Frames between rendering an eye pair and showing its stylised version: the workers get
``depth`` display periods per frame; the layer carries the pose each image was rendered with."""
XR_FRAME_BUDGET = 0.5
"""Fraction of a display period after xrWaitFrame that the client waits for stylised tiles
before it falls back and submits; the rest is left for compositing and xrEndFrame."""
XR_SWAPCHAIN_FORMATS = ("GL_SRGB8_ALPHA8", "GL_RGBA16F", "GL_RGB10_A2", "GL_RGBA16", "GL_RGBA8", "GL_SRGB8")
"""Colour formats in order of preference, taken from the runtime's list. sRGB first: eye
images are sRGB-encoded bytes, which an sRGB swapchain stores exactly."""
XR_RECONNECT_INTERVAL_S = 1.0
"""How often the client looks for the runtime again after losing it."""
XR_RECONNECT_TIMEOUT_S = 60.0
"""How long the client looks for a lost runtime before it gives up and leaves."""
XR_NEAR, XR_FAR = 0.05, 100.0
"""Clip planes of the eye projections, metres."""

# Students and distillation.
CALIBRATION_IMAGES = 16
"""BSDS500 training photos a student is calibrated on, layer by layer."""
MODEL_FILE_LIMIT = 1_000_000
"""Largest shipped model file, bytes."""

# Optimisation-based painting (vrstyle paint).
PAINT_CONTENT_LAYERS = ("relu4_2",)
PAINT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
"""VGG19 layers of the content and style losses (jcjohnson/neural-style's defaults)."""
PAINT_STYLE_WEIGHT = 10.0
"""Style loss weight against a content weight of 1 (both normalised by their targets): at 10 a
512 px photo stays recognisable under the artwork's strokes; 100 leaves little of it."""
PAINT_STEPS = 300
PAINT_SIZE = 512
PAINT_OPTIMISERS = ("lbfgs", "adam")
PAINT_INITS = ("random", "content")
