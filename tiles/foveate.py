"""Foveation: tiles away from the eye's centre run at 1/2 or 1/4 resolution and come back upscaled.

Lenses and eyes resolve far less away from the centre, so a tile there is cut from the eye
downscaled by its *scale* (2 or 4, area mean), run as usual, and its output upscaled back
(bilinear) onto the same core + overlap it returns at full resolution. Every tile of a grid
returns the same pixels whatever its scale, so stitching, feathering and fallback tiles are
unchanged; a scaled tile's output occupies the top-left corner of its slot.

A scale-``s`` tile is a tile of :func:`level_grid`: the grid over the eye downscaled by ``s``,
cores ``s`` times smaller, the same halo (the network sees as much context, in its own pixels,
as at full resolution) and an overlap just wide enough for the bilinear upscale to reach the
full-resolution overlap band. Its cores must be multiples of ``s * align``, so that the
downscaled tiles stay on the network's downsampling phase: plan the grid with
``core_align = align * max(scales)``.

>>> from tiles.grid import plan_grid
>>> grid = plan_grid(2208, 2064, tile=512, halo=56, overlap=16, core_align=16)
>>> tile_scales(grid, (1104, 1032)).reshape(grid.rows, grid.cols).tolist()[:2]
[[4, 2, 2, 2, 4], [2, 1, 1, 1, 2]]
>>> level = level_grid(grid, 2)
>>> (level.core_h, level.core_w, level.overlap, level.halo, level.out_shape)
(224, 208, 9, 59, (242, 226))
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tiles.grid import GridError, TileGrid

SCALES = (1, 2, 4)
"""Downscale factors a tile may run at."""
RINGS = (0.35, 0.7)
"""Default ring radii (see :func:`tile_scales`): full resolution within 0.35 of the eye's half
size from the centre, 1/2 within 0.7, 1/4 beyond."""


def tile_scales(grid: TileGrid, centre: tuple[float, float], rings: Sequence[float] = RINGS) -> np.ndarray:
    """The scale of each tile of one eye: 1 for tiles reaching into the inner ring, then 2, then 4.

    Distances are measured in units of the eye's half height and half width (the eye's edge
    midpoints are at 1 from its middle), from ``centre`` to the nearest pixel of each tile's
    core, so every pixel within ``rings[0]`` of the centre is in a full-resolution tile.

    Args:
        grid: the eye's grid.
        centre: (y, x) in pixels: the eye's optical centre or the gaze point (may lie outside).
        rings: increasing radii of the scale-1 and scale-2 rings (one radius: 1 then 2).

    Returns:
        (len(grid),) int8 scales from :data:`SCALES`.

    Raises:
        GridError: radii that are not increasing and non-negative, or more rings than scales.
    """
    rings = [float(r) for r in rings]
    if not 1 <= len(rings) < len(SCALES) or any(r < 0 for r in rings) or rings != sorted(rings):
        raise GridError(f"foveation rings must be 1 or 2 increasing non-negative radii, got {rings}")
    cy, cx = centre
    tile_y = np.arange(grid.rows)[:, None] * grid.core_h
    tile_x = np.arange(grid.cols)[None, :] * grid.core_w
    dy = np.maximum(np.maximum(tile_y - cy, cy - (tile_y + grid.core_h)), 0) / (grid.height / 2)
    dx = np.maximum(np.maximum(tile_x - cx, cx - (tile_x + grid.core_w)), 0) / (grid.width / 2)
    distance = np.hypot(dy, dx).ravel()
    scales = np.full(len(grid), SCALES[len(rings)], np.int8)
    for radius, scale in zip(reversed(rings), reversed(SCALES[:len(rings)])):
        scales[distance <= radius] = scale
    return scales


def level_grid(grid: TileGrid, scale: int, align: int = 4) -> TileGrid:
    """The grid a scale-``scale`` tile belongs to: over the eye downscaled by ``scale``.

    Tile ``t`` of it covers the core of tile ``t`` of ``grid``. Its overlap is the smallest
    that lets the bilinear upscale (:func:`upscale_tile`) fill ``grid``'s overlap band; its
    halo is ``grid``'s, rounded up so that ``overlap + halo`` is a multiple of ``align``.

    Raises:
        GridError: an unknown scale, or cores that are not multiples of ``scale * align``.
    """
    if scale not in SCALES:
        raise GridError(f"tile scale must be one of {SCALES}, got {scale}")
    if scale == 1:
        return grid
    if grid.core_h % (scale * align) or grid.core_w % (scale * align):
        raise GridError(f"tile cores {grid.core_h}x{grid.core_w} px are not multiples of {scale * align}: "
                        f"plan the grid with core_align={scale * align} to run tiles at 1/{scale}")
    overlap = math.ceil((grid.overlap - 0.5) / scale + 0.5)
    halo = -(-(overlap + grid.halo) // align) * align - overlap
    return TileGrid(-(-grid.height // scale), -(-grid.width // scale), grid.core_h // scale, grid.core_w // scale,
                    grid.rows, grid.cols, halo, overlap)


def downscale(images: np.ndarray, scale: int) -> np.ndarray:
    """Area-mean downscale of (B, H, W, C) uint8 images by a power of two (edges replicated to
    whole blocks), rounded to the nearest value (halves up).

    >>> downscale(np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1), 2)[0, ..., 0].tolist()
    [[3, 5], [11, 13]]
    """
    if scale < 1 or scale & (scale - 1):
        raise GridError(f"scale must be a power of two, got {scale}")
    if scale == 1:
        return images
    height, width = images.shape[1:3]
    pad_h, pad_w = -height % scale, -width % scale
    if pad_h or pad_w:
        images = np.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    total = images.astype(np.uint16)  # pairwise sums of strided views: ten times numpy's block sum
    for _ in range(scale.bit_length() - 1):
        total = total[:, 0::2] + total[:, 1::2]
        total = total[:, :, 0::2] + total[:, :, 1::2]
    return ((total + scale * scale // 2) // (scale * scale)).astype(np.uint8)


def upscale_weights(grid: TileGrid, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear sampling of a scale-``scale`` tile's output onto ``grid``'s returned pixels.

    Returned pixel ``q`` of a tile (0 at the outer edge of its overlap) has its centre at
    ``(q + 0.5 - overlap) / scale`` in downscaled units from the core's corner, which is the
    downscaled tile's pixel ``u = (q + 0.5 - overlap) / scale - 0.5 + level.overlap``
    (pixel centres aligned, as torch's ``align_corners=False``; the same for every tile).

    Returns:
        (rows, row fractions, cols, col fractions): the pixel before ``u`` along each axis and
        the weight of the pixel after it.
    """
    level = level_grid(grid, scale)
    axes = []
    for length in grid.out_shape:
        u = (np.arange(length) + 0.5 - grid.overlap) / scale - 0.5 + level.overlap
        before = np.floor(u).astype(np.int64)
        axes += [before, (u - before).astype(np.float32)]
    return tuple(axes)


def upscale_tile(small: np.ndarray, grid: TileGrid, scale: int) -> np.ndarray:
    """A scale-``scale`` tile's output (``level_grid(grid, scale).out_shape``, channels last,
    uint8) upscaled bilinearly to ``grid.out_shape``.

    >>> from tiles.grid import plan_grid
    >>> grid = plan_grid(64, 64, tile=32, halo=8, overlap=4, core_align=8)
    >>> small = np.full(level_grid(grid, 2).out_shape + (3,), 7, np.uint8)
    >>> big = upscale_tile(small, grid, 2)
    >>> big.shape, int(big.min()), int(big.max())
    ((40, 40, 3), 7, 7)
    """
    if scale == 1:
        return small
    expected = level_grid(grid, scale).out_shape
    if small.shape[:2] != expected:
        raise GridError(f"a 1/{scale} tile is {small.shape[:2]}, expected {expected}")
    rows, fy, cols, fx = upscale_weights(grid, scale)
    pixels = small.astype(np.float32)
    top, bottom = pixels[rows], pixels[rows + 1]
    vertical = top + fy[:, None, None] * (bottom - top)
    left, right = vertical[:, cols], vertical[:, cols + 1]
    out = left + fx[None, :, None] * (right - left)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def expand_tiles(tiles: np.ndarray, grid: TileGrid, scales: np.ndarray) -> np.ndarray:
    """Returned tiles with every scaled one upscaled in place of its top-left corner: (N, out_h,
    out_w, C), a copy when any tile is scaled.

    Raises:
        GridError: ``scales`` does not give one known scale per tile.
    """
    scales = np.asarray(scales)
    if scales.shape != (len(tiles),) or not np.isin(scales, SCALES).all():
        raise GridError(f"need one scale from {SCALES} per tile ({len(tiles)}), got {scales.tolist()}")
    if (scales == 1).all():
        return tiles
    out = tiles.copy()
    for scale in set(scales.tolist()) - {1}:
        height, width = level_grid(grid, scale).out_shape
        for index in np.flatnonzero(scales == scale):
            out[index] = upscale_tile(tiles[index, :height, :width], grid, scale)
    return out
