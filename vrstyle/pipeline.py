"""The pipeline: images or eye buffers -> tiles -> style network -> stitched images.

Here the single-image path used by ``vrstyle stylize``: tiles are stylised row by row and
stitched band by band, so memory is bounded by a row of tiles, not by the image.
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

import tiles
from tiles import Stitcher, TileGrid
from vrstyle import settings
from vrstyle.models.engine import StyleEngine
from vrstyle.normstats import combine_moments, moments_to_stats

log = logging.getLogger(__name__)


def sample_tiles(grid: TileGrid, count: int) -> list[int]:
    """``count`` tile indices spread evenly over the grid (all of them if it has fewer).

    >>> sample_tiles(tiles.plan_grid(1000, 1000, tile=200, halo=8, overlap=0), 3)
    [0, 12, 24]
    """
    if count >= len(grid):
        return list(range(len(grid)))
    return np.linspace(0, len(grid) - 1, count).round().astype(int).tolist()


def measure_stats(engine: StyleEngine, images: np.ndarray, grid: TileGrid,
                  count: int = settings.STATS_TILES) -> np.ndarray:
    """Normalisation statistics (2, C) of one image or a stereo pair, at full resolution.

    Measured jointly over the cores of ``count`` tiles spread over each image (both eyes
    together, so they match), never from a downscaled thumbnail.
    """
    sample = tiles.cut(images, grid, sample_tiles(grid, count))
    return moments_to_stats(combine_moments([engine.measure(sample, grid.margin)]))


def stylize_image(engine: StyleEngine, image: np.ndarray, grid: TileGrid, shared_stats: bool = True,
                  batch: int = settings.BATCH_TILES, ramp: str = settings.RAMP,
                  stats_tiles: int = settings.STATS_TILES, progress: bool | None = False) -> np.ndarray:
    """Stylise one (H, W, 3) uint8 image through its tile grid.

    Args:
        engine: the style network.
        image: (H, W, 3) uint8 RGB.
        grid: tile grid planned for the image.
        shared_stats: normalise every tile with the image's statistics (seam-free); False
            gives each tile its own InstanceNorm statistics (seams; for comparison).
        batch: tiles per forward pass.
        ramp: feather ramp.
        stats_tiles: tiles measured together for the statistics (see :func:`measure_stats`).
        progress: show a progress bar (None: only on a terminal).

    Returns:
        (H, W, 3) uint8 stylised image.
    """
    stats = measure_stats(engine, image, grid, stats_tiles) if shared_stats else None
    out = np.empty_like(image)
    previous: dict[int, np.ndarray] = {}
    with tqdm(total=len(grid), unit="tile", disable=None if progress is None else not progress, desc="stylize") as bar:
        for row in range(grid.rows):
            indices = list(range(row * grid.cols, (row + 1) * grid.cols))
            current: dict[int, np.ndarray] = {}
            for start in range(0, len(indices), batch):
                chunk = indices[start:start + batch]
                styled = engine.stylize(tiles.cut(image, grid, chunk), stats, crop=grid.halo)
                current.update(zip(chunk, styled))
                bar.update(len(chunk))
            top = 0 if row == 0 else row * grid.core_h - grid.overlap
            bottom = grid.height if row == grid.rows - 1 else (row + 1) * grid.core_h - grid.overlap
            band = Stitcher(grid, ramp=ramp, rows=(top, bottom))
            for index, tile in {**previous, **current}.items():
                band.add(index, tile)
            out[top:bottom] = band.result(np.uint8)[0]
            previous = current
    return out


def stylize_untiled(engine: StyleEngine, image: np.ndarray, grid: TileGrid, stats: np.ndarray | None) -> np.ndarray:
    """The whole-image computation the grid's tiles reproduce: one pass over the padded image.

    The image is reflected out by the grid's margin exactly as the tiles see it, so with
    shared statistics and a full halo the tiled result equals this one.
    """
    padded = tiles.pad_frame(image, grid)[None]
    styled = engine.stylize(padded, stats)[0]
    return tiles.crop_frame(styled, grid)
