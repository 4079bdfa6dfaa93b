"""Every default of vrstyle in one place, so the CLI, pipeline and tests agree."""

from __future__ import annotations

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
"""Tiles per forward pass in single-image stylisation (memory grows with it)."""

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
FRAME_DEADLINE_S = 0.1
"""Seconds after submission when a frame's missing tiles are filled from the previous frame."""
PIPELINE_DEPTH = 2
"""Frames in flight at once; submitting more drops the oldest."""
STYLIZE_INFLIGHT = 8
"""Requests in flight while stylising one image (keeps every worker busy)."""
STYLIZE_STALL_S = 300.0
"""Single-image stylisation gives up when no tile has come back for this long."""

# Students and distillation.
CALIBRATION_IMAGES = 16
"""BSDS500 training photos a student is calibrated on, layer by layer."""
MODEL_FILE_LIMIT = 300_000
"""Largest shipped model file, bytes."""
