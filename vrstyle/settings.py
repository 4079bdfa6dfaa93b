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
