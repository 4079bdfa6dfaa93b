"""Tile grids: where each tile sits, what it reads and what it gives back.

Terms, per axis (all in pixels of the full image):

* **core**: the cells of a regular grid; they partition the grid's extent, which covers the
  image (the last row and column may overhang it by less than one alignment step per tile).
* **overlap**: a band on each side of the core that the tile also returns; neighbours' bands
  cover the same ``2 * overlap`` pixels around their shared edge and are blended there.
* **halo**: context read beyond core and overlap and cropped away after inference, so that
  the returned pixels see all the context they would see in the whole image.

A tile therefore reads ``core + 2 * (overlap + halo)`` pixels and returns
``core + 2 * overlap``. Pixels it reads outside the image are reflected back in, so every
tile of a grid has the same shape (fixed shapes suit compiled inference); :meth:`TileGrid.bounds`
says where the image's own borders fall inside each tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np


class GridError(ValueError):
    """Tile geometry that cannot be planned (zero sizes, halo larger than the tile, ...)."""


@dataclass(frozen=True)
class Tile:
    """One tile of a grid: ``index`` in row-major order and the image coordinates of its core."""

    index: int
    row: int
    col: int
    y: int
    x: int


@dataclass(frozen=True)
class TileGrid:
    """A planned grid over a ``height x width`` image. Build it with :func:`plan_grid`."""

    height: int
    width: int
    core_h: int
    core_w: int
    rows: int
    cols: int
    halo: int
    overlap: int

    def __len__(self) -> int:
        return self.rows * self.cols

    @property
    def margin(self) -> int:
        """Pixels a tile reads beyond its core on each side (overlap + halo)."""
        return self.overlap + self.halo

    @property
    def in_shape(self) -> tuple[int, int]:
        """(height, width) of every tile as cut: core + overlap + halo."""
        return self.core_h + 2 * self.margin, self.core_w + 2 * self.margin

    @property
    def out_shape(self) -> tuple[int, int]:
        """(height, width) of every tile as returned: core + overlap."""
        return self.core_h + 2 * self.overlap, self.core_w + 2 * self.overlap

    def bounds(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Where the image lies in each tile as cut: (n, 4) int32 rows top, bottom, left, right.

        In the tile's input pixels; a side outside the tile (``top <= 0``, ``bottom >=``
        ``in_shape[0]``, ...) is not a border of that tile. A network that reflects each
        layer's input at these borders, as it reflects at the edges of a whole image, computes
        on the tiles what it computes on the bare image, borders included (the pixels cut
        beyond a border only fill the tile's shape).

        >>> plan_grid(100, 60, tile=64, halo=8, overlap=0).bounds().tolist()
        [[8, 108, 8, 68], [-44, 56, 8, 68]]
        """
        chosen = range(len(self)) if indices is None else indices
        rows = []
        for index in chosen:
            tile = self.tile(index)
            top, left = self.margin - tile.y, self.margin - tile.x
            rows.append((top, top + self.height, left, left + self.width))
        return np.array(rows, dtype=np.int32).reshape(-1, 4)

    def tiles(self) -> Iterator[Tile]:
        for row in range(self.rows):
            for col in range(self.cols):
                yield Tile(row * self.cols + col, row, col, row * self.core_h, col * self.core_w)

    def tile(self, index: int) -> Tile:
        if not 0 <= index < len(self):
            raise IndexError(f"tile index {index} outside a grid of {len(self)} tiles")
        row, col = divmod(index, self.cols)
        return Tile(index, row, col, row * self.core_h, col * self.core_w)


def bounds_outside(bounds: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """The first row of ``bounds`` (:meth:`TileGrid.bounds`) that leaves no image in a
    ``height x width`` tile, or None when every tile holds some of the image.

    >>> bounds_outside(np.array([[0, 10, 0, 10], [12, 20, 0, 10]]), 10, 10).tolist()
    [12, 20, 0, 10]
    """
    top, bottom, left, right = np.asarray(bounds, np.int64).reshape(-1, 4).T
    inside = ((top < np.minimum(bottom, height)) & (bottom > np.maximum(top, 0))
              & (left < np.minimum(right, width)) & (right > np.maximum(left, 0)))
    return None if inside.all() else np.asarray(bounds).reshape(-1, 4)[~inside][0]


def plan_grid(height: int, width: int, tile: int | tuple[int, int] = 512, halo: int = 56,
              overlap: int = 16, align: int = 4, core_align: int | None = None) -> TileGrid:
    """Plan a balanced grid of cores no larger than ``tile`` over a ``height x width`` image.

    The number of rows is ``ceil(height / tile)``; the cores are then shrunk to share the
    image evenly (rounded up to ``align``), so the grid hugs the image instead of overhanging
    it by most of a tile. A tile larger than the image gives one tile covering it.

    Args:
        height, width: image size in pixels.
        tile: largest core size, one number or (height, width).
        halo: context pixels read beyond the overlap band and cropped after inference;
            rounded up so that ``overlap + halo`` is a multiple of ``align`` (every tile then
            starts on the whole image's phase of the downsampling).
        overlap: pixels returned beyond the core and blended with the neighbour.
        align: cores are multiples of this (the network's total stride), so every tile
            starts on the same phase of the network's downsampling as the whole image.
        core_align: cores are multiples of this instead (a multiple of ``align``), e.g.
            ``align * 4`` for tiles that also run at 1/4 resolution (:mod:`tiles.foveate`).

    Returns:
        The grid.

    Raises:
        GridError: non-positive sizes, negative halo or overlap, halo larger than the tile,
            or an overlap wider than half a core.

    >>> g = plan_grid(768, 1024, tile=512, halo=56, overlap=16)
    >>> (g.rows, g.cols, g.core_h, g.core_w, g.in_shape, g.out_shape)
    (2, 2, 384, 512, (528, 656), (416, 544))
    """
    tile_h, tile_w = tile if isinstance(tile, (tuple, list)) else (tile, tile)
    core_align = align if core_align is None else core_align
    for name, value in (("image height", height), ("image width", width), ("tile height", tile_h),
                        ("tile width", tile_w), ("alignment", align), ("core alignment", core_align)):
        if not isinstance(value, int) or value < 1:
            raise GridError(f"{name} must be a positive integer, got {value!r}")
    if core_align % align:
        raise GridError(f"core alignment {core_align} is not a multiple of the alignment {align}")
    for name, value in (("halo", halo), ("overlap", overlap)):
        if not isinstance(value, int) or value < 0:
            raise GridError(f"{name} must be a non-negative integer, got {value!r}")
    if halo > min(tile_h, tile_w):
        raise GridError(f"halo ({halo} px) is larger than the tile ({tile_h}x{tile_w} px)")
    halo = _align_up(halo + overlap, align) - overlap
    rows, core_h = _split_axis(height, tile_h, core_align)
    cols, core_w = _split_axis(width, tile_w, core_align)
    if (rows > 1 and 2 * overlap > core_h) or (cols > 1 and 2 * overlap > core_w):
        raise GridError(f"overlap ({overlap} px) is wider than half a tile core "
                        f"({core_h}x{core_w} px): neighbouring blend bands would collide")
    return TileGrid(height, width, core_h, core_w, rows, cols, halo, overlap)


def plan_grid_for_workers(height: int, width: int, workers: int, halo: int = 56, overlap: int = 16,
                          align: int = 4) -> TileGrid:
    """The grid with about ``workers`` balanced tiles per image, as square as the image allows.

    One worker stylises whole images (no halo is wasted); N workers get about N pieces each,
    so they finish together. Raises :class:`GridError` for fewer than one worker.

    >>> g = plan_grid_for_workers(2208, 2064, workers=4)
    >>> (g.rows, g.cols)
    (2, 2)
    """
    if not isinstance(workers, int) or workers < 1:
        raise GridError(f"workers must be a positive integer, got {workers!r}")
    best = None
    for rows in range(1, workers + 1):
        cols = math.ceil(workers / rows)
        core_h, core_w = math.ceil(height / rows), math.ceil(width / cols)
        cost = (rows * cols - workers, abs(math.log(core_h / core_w)))
        if best is None or cost < best[0]:
            best = (cost, core_h, core_w)
    _, core_h, core_w = best
    core_h, core_w = _align_up(core_h, align), _align_up(core_w, align)
    return plan_grid(height, width, (core_h, core_w), halo, overlap, align)


def _split_axis(length: int, tile: int, align: int) -> tuple[int, int]:
    core = _align_up(math.ceil(length / math.ceil(length / tile)), align)
    return math.ceil(length / core), core


def _align_up(value: int, align: int) -> int:
    return -(-value // align) * align
