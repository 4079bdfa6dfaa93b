"""Feather weights: how much each tile counts where it overlaps its neighbours.

Across the ``2 * overlap`` band around a shared edge one tile's weight ramps down while its
neighbour's ramps up; at the image border there is no neighbour and the weight stays 1.
Both ramps here are partitions of unity (``f(u) + f(1 - u) = 1``), though stitching
divides by the weight sum anyway, so any positive weights give a correct blend.
"""

from __future__ import annotations

import functools

import numpy as np

from tiles.grid import GridError, TileGrid

RAMPS = ("linear", "cosine")


def ramp(u: np.ndarray, kind: str = "linear") -> np.ndarray:
    """The rising half of a blend: 0 at ``u = 0``, 1 at ``u = 1``.

    Args:
        u: positions in [0, 1].
        kind: ``"linear"`` (``u``) or ``"cosine"`` (``(1 - cos(pi u)) / 2``, smooth at both ends).

    >>> ramp(np.array([0.25, 0.75]), "linear").tolist()
    [0.25, 0.75]
    """
    if kind == "linear":
        return u
    if kind == "cosine":
        return 0.5 - 0.5 * np.cos(np.pi * u)
    raise GridError(f"unknown feather ramp {kind!r}; choose one of {', '.join(RAMPS)}")


def axis_weights(length: int, overlap: int, rise: bool, fall: bool, kind: str = "linear") -> np.ndarray:
    """1-D weights over a returned tile side of ``length`` px, ramped where a neighbour is.

    ``rise``/``fall``: whether there is a neighbour before/after. Samples are taken at pixel
    centres, so no weight inside a tile is ever exactly zero.

    >>> axis_weights(8, 2, rise=True, fall=False).tolist()
    [0.125, 0.375, 0.625, 0.875, 1.0, 1.0, 1.0, 1.0]
    """
    weights = np.ones(length, dtype=np.float32)
    if overlap > 0:
        band = ramp((np.arange(2 * overlap) + 0.5) / (2 * overlap), kind).astype(np.float32)
        if rise:
            weights[: 2 * overlap] *= band
        if fall:
            weights[length - 2 * overlap:] *= band[::-1]
    return weights


@functools.lru_cache(maxsize=1024)
def tile_weights(grid: TileGrid, index: int, kind: str = "linear") -> np.ndarray:
    """(out_h, out_w) float32 weight map of tile ``index``: the product of its two axis ramps.

    Cached and read-only: a grid's maps are reused for every frame.
    """
    tile = grid.tile(index)
    out_h, out_w = grid.out_shape
    wy = axis_weights(out_h, grid.overlap, tile.row > 0, tile.row < grid.rows - 1, kind)
    wx = axis_weights(out_w, grid.overlap, tile.col > 0, tile.col < grid.cols - 1, kind)
    weights = np.outer(wy, wx)
    weights.setflags(write=False)
    return weights
