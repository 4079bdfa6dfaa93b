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

# Students and distillation.
CALIBRATION_IMAGES = 16
"""BSDS500 training photos a student is calibrated on, layer by layer."""
MODEL_FILE_LIMIT = 300_000
"""Largest shipped model file, bytes."""
