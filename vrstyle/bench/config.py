"""What a benchmark run measures: its configuration, checked before anything starts."""

from __future__ import annotations

from dataclasses import dataclass, field

import tiles
from tiles import TileGrid
from vrstyle import settings
from vrstyle.errors import VrstyleError

FOVEATION = ("off", "fixed")
"""Foveation a benchmark can measure (gaze needs a headset)."""
WIRE_COUNTERS = ("pixel_bytes_sent", "pixel_bytes_received")
"""Pixel bytes a transport client sent and received as messages (not through shared memory)."""
STAGES = ("split", "send", "queue", "inference", "transfer", "collect", "stitch")
"""A frame's latency, stage by stage along its critical path (see :meth:`~vrstyle.pipeline.Timings.critical_path`)."""


@dataclass
class BenchConfig:
    """Everything a benchmark run depends on (all of it goes into the JSON).

    Attributes:
        eye: the preset name or "WxH" as given; ``eye_shape`` is (height, width) per eye.
        workers: worker counts to sweep (ignored with ``broker``: its workers are used).
        devices: devices handed to started workers in turn (``cuda`` means one per visible GPU).
        fp16, compile: None means the worker default (on for CUDA, off for CPU).
        rate: frames submitted per second (None: closed loop, ``depth`` frames in flight).
        deadline_ms: fill tiles not back this long after submission (None: wait for all).
        source: ``["synthetic"]``, ``["scene"]`` (the demo scene, rendered headless with its
            depth), a folder, one image, or a left and a right image.
        threads: torch threads per CPU worker and in this process (None: cores / workers).
        data_path: ``null`` or ``identity`` workers (:mod:`vrstyle.transport.datapath`) instead
            of the style's network, with a memcpy of the frame as the baseline; None: the network.
        payload, codec, quality: how tiles travel (:class:`~vrstyle.transport.client.TransportClient`):
            ``payload="zerocopy"`` with a ``codec`` measures a network link's compression on one host.
        stitch: stitch every result on the CPU, as a desktop display would, and count it in the
            latency; off, results end at the tiles (a headset's GPU compositor takes them).
        foveation: ``fixed`` measures every worker count twice, without and with the periphery
            at lower resolution (:mod:`tiles.foveate`, rings ``rings`` around each eye's middle).
        consistency: ``stereo`` leaves out the right eye's tiles the left eye's strokes would
            cover (:func:`vrstyle.reproject.stereo_skip`; needs the scene's depth).
    """

    eye: str = settings.BENCH_EYE
    eye_shape: tuple[int, int] = settings.EYE_PRESETS[settings.BENCH_EYE]
    eyes: int = 2
    tile: int = settings.TILE
    halo: int = settings.HALO
    overlap: int = settings.OVERLAP
    workers: list[int] = field(default_factory=lambda: [1])
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    style: str = settings.DEFAULT_STYLE
    fp16: bool | None = None
    compile: bool | None = None
    frames: int = settings.BENCH_FRAMES
    warmup: int = settings.BENCH_WARMUP
    rate: float | None = None
    deadline_ms: float | None = None
    source: list[str] = field(default_factory=lambda: ["synthetic"])
    broker: str | None = None
    curve: str | None = None
    key_name: str = "client"
    threads: int | None = None
    request_tiles: int = settings.REQUEST_TILES
    depth: int = settings.PIPELINE_DEPTH
    data_path: str | None = None
    payload: str = "auto"
    codec: str = "auto"
    quality: int = 90
    stitch: bool = True
    foveation: str = "off"
    rings: tuple[float, ...] = tiles.RINGS
    consistency: str = "off"

    def client_options(self) -> dict:
        """How a transport client of this run sends tiles."""
        return {"payload": self.payload, "compress": self.codec, "quality": self.quality}


def worker_devices(devices: list[str], count: int) -> list[str]:
    """The device of each of ``count`` started workers: the list in turn, ``cuda`` spread over the GPUs."""
    if devices == ["cuda"]:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible == 0:
            raise VrstyleError("--device cuda requested but CUDA is not available on this machine")
        return [f"cuda:{i % visible}" for i in range(count)]
    return [devices[i % len(devices)] for i in range(count)]


def check(config: BenchConfig) -> TileGrid:
    """Validate the configuration before anything starts; returns the grid of one eye.

    A tile larger than the eye is one tile covering it, as in ``stylize`` and ``mirror``.

    Raises:
        VrstyleError, GridError: a problem the user can fix, in one line.
    """
    for name in ("frames", "request_tiles", "depth"):
        if getattr(config, name) < 1:
            raise VrstyleError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
    if config.warmup < 0:
        raise VrstyleError(f"--warmup must be 0 or more, got {config.warmup}")
    if not config.workers or min(config.workers) < 1:
        raise VrstyleError(f"worker counts must be at least 1, got {config.workers}")
    if config.rate is not None and not config.rate > 0:
        raise VrstyleError(f"--rate must be positive, got {config.rate}")
    if config.deadline_ms is not None and not config.deadline_ms > 0:
        raise VrstyleError(f"--deadline must be positive, got {config.deadline_ms}")
    if config.curve and not config.broker:
        raise VrstyleError("--curve needs --broker")
    cuda = [d for d in config.devices if d.startswith("cuda")]
    if config.fp16 and not cuda:
        raise VrstyleError("--fp16 needs a CUDA device (--device cuda)")
    if config.foveation not in FOVEATION:
        raise VrstyleError(f"--foveation must be one of {', '.join(FOVEATION)}, got {config.foveation!r}")
    if config.consistency not in ("off", "stereo"):
        raise VrstyleError(f"--consistency must be off or stereo here, got {config.consistency!r}")
    if config.consistency == "stereo" and (config.source != ["scene"] or config.eyes != 2):
        raise VrstyleError("--consistency stereo needs both eyes' depth: --source scene, not --mono")
    height, width = config.eye_shape
    core_align = settings.ALIGN
    if config.foveation != "off":
        tiles.tile_scales(tiles.plan_grid(height, width), (0, 0), config.rings)  # validates the rings
        core_align *= tiles.SCALES[len(config.rings)]
    return tiles.plan_grid(height, width, config.tile, config.halo, config.overlap, settings.ALIGN, core_align)
