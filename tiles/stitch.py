"""Stitching: every pixel is the weighted sum of the tiles that return it over their weights.

Never a hard crop: ``sum(w_i * tile_i) / sum(w_i)``. A pixel that no tile's weight reaches
comes out 0, the same rule as the GPU resolve pass (``rgb / max(a, eps)``).
"""

from __future__ import annotations

import numpy as np

from tiles.feather import tile_weights
from tiles.foveate import expand_tiles
from tiles.grid import GridError, TileGrid

WEIGHT_EPS = 1e-6
"""Weight sums at or below this count as 'no tile reached this pixel'."""


class Stitcher:
    """Accumulates returned tiles (numpy, channels-last) as they arrive, in any order.

    Only the blend bands (``2 * overlap`` px around each seam) are accumulated in float32
    and divided by their weight sum, by compiled loops; everywhere else one tile alone covers
    a pixel with weight 1 and is copied straight into the output, so stitching moves about as
    many bytes as a copy of the frame.

    Args:
        grid: the grid the tiles were cut with.
        batch: images per frame (2 for a stereo pair).
        channels: channels per pixel.
        ramp: feather ramp (see :mod:`tiles.feather`).
        rows: optional ``(start, stop)`` band of image rows to assemble; tiles are clipped
            to it, so a large image can be assembled in bounded memory, band by band.
        dtype: the result's dtype; integer results are rounded and clipped to its range.

    Raises:
        GridError: ``rows`` is not a band of the image.

    >>> from tiles.grid import plan_grid
    >>> g = plan_grid(8, 8, tile=4, halo=0, overlap=1, align=1)
    >>> s = Stitcher(g, channels=1, dtype=np.uint8)
    >>> for t in range(len(g)):
    ...     s.add(t, np.full((6, 6, 1), 100, np.uint8))
    >>> int(s.result().min()), s.missing()
    (100, [])
    """

    def __init__(self, grid: TileGrid, batch: int = 1, channels: int = 3, ramp: str = "linear",
                 rows: tuple[int, int] | None = None, dtype: np.dtype | type = np.float32):
        self.grid, self.batch, self.ramp = grid, batch, ramp
        self.top, self.bottom = rows if rows is not None else (0, grid.height)
        if not 0 <= self.top < self.bottom <= grid.height:
            raise GridError(f"row band {rows} is not inside the image's {grid.height} rows")
        self.dtype = np.dtype(dtype)
        height = self.bottom - self.top
        self.out = np.zeros((batch, height, grid.width, channels), self.dtype)
        self.received = np.zeros(batch * len(grid), dtype=bool)
        overlap = grid.overlap
        # Blend bands in the stitched band's coordinates: rows around every row seam (full
        # width, so they hold the crossings), columns around every column seam (other rows).
        row_bands = [(max(r * grid.core_h - overlap, self.top) - self.top,
                      min(r * grid.core_h + overlap, self.bottom) - self.top) for r in range(1, grid.rows)]
        col_bands = [(c * grid.core_w - overlap, min(c * grid.core_w + overlap, grid.width))
                     for c in range(1, grid.cols)]
        self.row_bands = [_Band(a, b, (batch, b - a, grid.width), channels) for a, b in row_bands if a < b]
        self.col_bands = [_Band(a, b, (batch, height, b - a), channels) for a, b in col_bands if a < b]

    def add(self, index: int, tile: np.ndarray) -> None:
        """Blend in returned tile ``index`` (image-major over the batch), shaped (out_h, out_w, C)."""
        if not 0 <= index < len(self.received):
            raise GridError(f"tile index {index} outside 0..{len(self.received) - 1}")
        if tile.shape[:2] != self.grid.out_shape or tile.shape[2:] != self.out.shape[3:]:
            raise GridError(f"tile {index} is {tile.shape}, expected "
                            f"{self.grid.out_shape + self.out.shape[3:]}")
        image, t = divmod(index, len(self.grid))
        self.received[index] = True
        dst, src = _overlap_region(self.grid, t, self.top, self.bottom)
        if dst is None:
            return
        weights = tile_weights(self.grid, t, self.ramp)
        ya, yb, xa, xb = dst[0].start, dst[0].stop, dst[1].start, dst[1].stop
        dy, dx = src[0].start - ya, src[1].start - xa  # tile coordinates = band coordinates + (dy, dx)

        def blend(band: _Band, y0: int, y1: int, x0: int, x1: int, by: int, bx: int) -> None:
            from tiles.blend import accumulate  # compiled; a grid without seams never loads numba

            accumulate(band.sum[image, y0 - by:y1 - by, x0 - bx:x1 - bx],
                       band.weight[image, y0 - by:y1 - by, x0 - bx:x1 - bx],
                       weights[y0 + dy:y1 + dy, x0 + dx:x1 + dx], tile[y0 + dy:y1 + dy, x0 + dx:x1 + dx])

        alone_rows, y = [], ya
        for band in self.row_bands:
            lo, hi = max(band.start, ya), min(band.stop, yb)
            if lo < hi:
                blend(band, lo, hi, xa, xb, band.start, 0)
                if y < lo:
                    alone_rows.append((y, lo))
                y = hi
        if y < yb:
            alone_rows.append((y, yb))
        for y0, y1 in alone_rows:
            x = xa
            for band in self.col_bands:
                lo, hi = max(band.start, xa), min(band.stop, xb)
                if lo < hi:
                    self.out[image, y0:y1, x:lo] = tile[y0 + dy:y1 + dy, x + dx:lo + dx]
                    blend(band, y0, y1, lo, hi, 0, band.start)
                    x = hi
            self.out[image, y0:y1, x:xb] = tile[y0 + dy:y1 + dy, x + dx:xb + dx]

    def missing(self) -> list[int]:
        """Indices of tiles not added yet."""
        return np.flatnonzero(~self.received).tolist()

    def result(self) -> np.ndarray:
        """(B, rows, W, C) stitched band in the stitcher's dtype; a pixel no tile reached is 0."""
        alone = np.ones(self.out.shape[1], bool)
        for band in self.row_bands:
            band.resolve(self.out[:, band.start:band.stop], np.ones(band.stop - band.start, bool))
            alone[band.start:band.stop] = False
        for band in self.col_bands:
            band.resolve(self.out[:, :, band.start:band.stop], alone)
        return self.out


class _Band:
    """A blend band: the weighted sum of the tiles over it and their weight sum."""

    def __init__(self, start: int, stop: int, shape: tuple[int, ...], channels: int):
        self.start, self.stop = start, stop
        self.sum = np.zeros(shape + (channels,), dtype=np.float32)
        self.weight = np.zeros(shape, dtype=np.float32)

    def resolve(self, out: np.ndarray, rows: np.ndarray) -> None:
        """Write sum / weight into ``out`` (the band's place in the result) on the chosen rows."""
        integer = np.issubdtype(out.dtype, np.integer)
        info = np.iinfo(out.dtype) if integer else None
        from tiles.blend import divide  # compiled, like accumulate

        divide(self.sum, self.weight, out, rows, integer, info.min if integer else 0, info.max if integer else 0)


def stitch(tiles, grid: TileGrid, ramp: str = "linear", scales: np.ndarray | None = None):
    """Stitch a batch of returned tiles back into images.

    Args:
        tiles: numpy (B * N, out_h, out_w, C) or torch (B * N, C, out_h, out_w), image-major.
        grid: the grid they were cut with.
        ramp: feather ramp.
        scales: numpy only: each tile's scale (:mod:`tiles.foveate`); scaled tiles are
            upscaled from the top-left corner of their slot first.

    Returns:
        numpy (B, H, W, C) in the tiles' dtype (integers rounded), or torch (B, C, H, W) float.

    Raises:
        GridError: the tile count or shape does not fit the grid.
    """
    count = len(grid)
    if tiles.shape[0] % count:
        raise GridError(f"{tiles.shape[0]} tiles do not make whole images of {count} tiles")
    batch = tiles.shape[0] // count
    if isinstance(tiles, np.ndarray):
        if scales is not None:
            tiles = expand_tiles(tiles, grid, scales)
        stitcher = Stitcher(grid, batch, tiles.shape[-1], ramp, dtype=tiles.dtype)
        for index, tile in enumerate(tiles):
            stitcher.add(index, tile)
        return stitcher.result()
    if scales is not None:
        raise GridError("scaled tiles are stitched from numpy arrays")
    return _stitch_torch(tiles, grid, batch, ramp)


def _stitch_torch(tiles, grid: TileGrid, batch: int, ramp: str):
    import torch

    if tuple(tiles.shape[-2:]) != grid.out_shape:
        raise GridError(f"tiles are {tuple(tiles.shape[-2:])}, expected {grid.out_shape}")
    channels = tiles.shape[1]
    total = torch.zeros(batch, channels, grid.height, grid.width, device=tiles.device)
    weight = torch.zeros(batch, 1, grid.height, grid.width, device=tiles.device)
    for index, tile in enumerate(tiles.float()):
        image, t = divmod(index, len(grid))
        dst, src = _overlap_region(grid, t, 0, grid.height)
        w = torch.tensor(tile_weights(grid, t, ramp)[src], device=tiles.device)
        total[(image, slice(None)) + dst] += w * tile[(slice(None),) + src]
        weight[(image, slice(None)) + dst] += w
    return torch.where(weight > WEIGHT_EPS, total / weight.clamp_min(WEIGHT_EPS), 0.0)


def covered_tiles(grid: TileGrid, mask: np.ndarray) -> np.ndarray:
    """Which tiles' cores (inside the image) lie wholly where ``mask`` is set.

    A consumer that fills the masked pixels another way (e.g. reprojected from the other eye)
    can leave these tiles out: every pixel outside the mask lies in the core of a tile that
    is not covered, so the stitch still reaches it (in a left-out tile's overlap, from the
    neighbour alone: no feather weight is zero). Asking the overlap to be covered too would
    keep out fewer tiles for nothing: 22-26% of a stereo frame's 64 px tiles on the demo scene
    against 25-28%.

    Args:
        grid: the tile grid of one image.
        mask: (height, width) bool.

    Returns:
        (len(grid),) bool.

    Raises:
        GridError: ``mask`` is not (height, width).

    >>> from tiles.grid import plan_grid
    >>> g = plan_grid(4, 8, tile=4, halo=0, overlap=0)
    >>> covered_tiles(g, np.broadcast_to(np.arange(8) < 4, (4, 8))).tolist()  # the left half
    [True, False]
    """
    if np.shape(mask) != (grid.height, grid.width):
        raise GridError(f"mask is {np.shape(mask)}, not the grid's ({grid.height}, {grid.width})")
    return np.array([bool(mask[tile.y:tile.y + grid.core_h, tile.x:tile.x + grid.core_w].all())
                     for tile in map(grid.tile, range(len(grid)))])


def _overlap_region(grid: TileGrid, index: int, top: int, bottom: int):
    """(destination slices in the band, source slices in the tile) of the visible part of a tile."""
    tile = grid.tile(index)
    out_h, out_w = grid.out_shape
    y0, x0 = tile.y - grid.overlap, tile.x - grid.overlap
    ya, yb = max(y0, top), min(y0 + out_h, bottom)
    xa, xb = max(x0, 0), min(x0 + out_w, grid.width)
    if ya >= yb or xa >= xb:
        return None, None
    dst = (slice(ya - top, yb - top), slice(xa, xb))
    src = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
    return dst, src
