"""Compiled blend loops behind :class:`tiles.Stitcher`'s seam bands (numba).

Apart from :mod:`tiles.stitch` so that importing :mod:`tiles` does not load numba (about
50 MB and most of a second): a grid without seams, e.g. a whole image in one tile, never needs
these.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tiles.stitch import WEIGHT_EPS


@njit(cache=True, nogil=True)
def accumulate(total, weight, w, tile):  # pragma: no cover - compiled
    """``total += w[..., None] * tile`` and ``weight += w`` in one pass over the pixels (numpy
    would make three float temporaries, most of a stitch's time)."""
    for y in range(w.shape[0]):
        for x in range(w.shape[1]):
            k = w[y, x]
            weight[y, x] += k
            for c in range(tile.shape[2]):
                total[y, x, c] += k * np.float32(tile[y, x, c])


@njit(cache=True, nogil=True)
def divide(total, weight, out, rows, integer, low, high):  # pragma: no cover - compiled
    """``out = total / weight`` where ``rows`` and the weight is above WEIGHT_EPS, else 0;
    rounded and clipped to ``low..high`` for an integer ``out``."""
    for b in range(total.shape[0]):
        for y in range(total.shape[1]):
            if not rows[y]:
                continue
            for x in range(total.shape[2]):
                w = weight[b, y, x]
                for c in range(total.shape[3]):
                    value = total[b, y, x, c] / w if w > WEIGHT_EPS else np.float32(0.0)
                    if integer:
                        value = min(max(np.rint(value), low), high)
                    out[b, y, x, c] = value
