"""tiles: tile grids with halo and overlap, feather weights, and stitching.

A standalone library (numpy and numba, optionally torch; nothing of vrstyle, GL or ZeroMQ): plan a
grid over an image, :func:`cut` haloed tiles from one image or a batch (a stereo pair is a
batch of two; :func:`cut_windows` gives them as views of one padded copy instead), run
anything on them, :func:`crop_halo`, and :func:`stitch` them back as a weighted sum over the
weight sum.

>>> import numpy as np
>>> image = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
>>> grid = plan_grid(300, 500, tile=128, halo=16, overlap=8)
>>> bool((stitch(crop_halo(cut(image, grid), grid), grid)[0] == image).all())
True
"""

from tiles.cut import TileWindows, copy_frames, crop_frame, crop_halo, cut, cut_windows, pad_frame, reflect_indices
from tiles.feather import RAMPS, axis_weights, ramp, tile_weights
from tiles.foveate import RINGS, SCALES, downscale, expand_tiles, level_grid, tile_scales, upscale_tile
from tiles.grid import GridError, Tile, TileGrid, bounds_outside, plan_grid, plan_grid_for_workers
from tiles.stitch import Stitcher, covered_tiles, stitch

__all__ = [
    "GridError", "RAMPS", "RINGS", "SCALES", "Stitcher", "Tile", "TileGrid", "TileWindows", "axis_weights",
    "bounds_outside", "copy_frames", "covered_tiles", "crop_frame", "crop_halo", "cut", "cut_windows", "downscale",
    "expand_tiles", "level_grid", "pad_frame", "plan_grid", "plan_grid_for_workers", "ramp", "reflect_indices",
    "stitch", "tile_scales", "tile_weights", "upscale_tile",
]
