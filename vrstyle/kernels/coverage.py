"""Stereo coverage in one compiled pass: which of a target eye's pixels another eye's strokes
will cover, at a headset's resolution within a frame.

The rule is :func:`vrstyle.reproject.stereo_skip`'s, written with numpy there as the reference
(:func:`~vrstyle.reproject.correspondence`, :func:`~vrstyle.reproject.fill_disocclusions`): a
pixel is covered when the source view sees its surface, or sees a pixel within ``reach`` along
its row (a thin disocclusion, filled from beside it), and so are its four neighbours (a margin
for a GPU's rounding). The reference builds a dozen full-size float64 temporaries and takes
seconds on a Quest 3's 2064x2208 eye; here each pixel is mapped with one 4x4 matrix (target
window coordinates to the source's eye space) and tested in registers, rows in parallel, in
float64 as the reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def _seen(target_depth, source_depth, to_source_eye, source_projection, tolerance, slack, out):  # pragma: no cover - compiled
    height, width = target_depth.shape
    source_height, source_width = source_depth.shape
    a, p, low = to_source_eye, source_projection, 0.5 - slack
    for row in prange(height):
        ny = 1.0 - (row + 0.5) / height * 2.0
        b0, b1 = a[0, 1] * ny + a[0, 3], a[1, 1] * ny + a[1, 3]
        b2, b3 = a[2, 1] * ny + a[2, 3], a[3, 1] * ny + a[3, 3]
        for col in range(width):
            nx = (col + 0.5) / width * 2.0 - 1.0
            nz = target_depth[row, col] * 2.0 - 1.0
            e0 = a[0, 0] * nx + a[0, 2] * nz + b0
            e1 = a[1, 0] * nx + a[1, 2] * nz + b1
            e2 = a[2, 0] * nx + a[2, 2] * nz + b2
            e3 = a[3, 0] * nx + a[3, 2] * nz + b3
            clip_w = p[3, 0] * e0 + p[3, 1] * e1 + p[3, 2] * e2 + p[3, 3] * e3
            x = ((p[0, 0] * e0 + p[0, 1] * e1 + p[0, 2] * e2 + p[0, 3] * e3) / clip_w + 1.0) / 2.0 * source_width
            y = (1.0 - (p[1, 0] * e0 + p[1, 1] * e1 + p[1, 2] * e2 + p[1, 3] * e3) / clip_w) / 2.0 * source_height
            distance = -e2 / e3
            inside = (x >= low) & (x <= source_width - low) & (y >= low) & (y <= source_height - low) & (distance > 0)
            there = p[2, 3] / (source_depth[min(max(int(y), 0), source_height - 1),
                                            min(max(int(x), 0), source_width - 1)] * 2.0 - 1.0 + p[2, 2])
            out[row, col] = inside & (abs(there - distance) <= tolerance * max(distance, 1e-6))


@njit(parallel=True, cache=True)
def _filled(seen, reach, out):  # pragma: no cover - compiled
    height, width = seen.shape
    for row in prange(height):
        since = reach + 1  # columns since the last seen pixel, to the left
        for col in range(width):
            since = 0 if seen[row, col] else since + 1
            out[row, col] = since <= reach
        since = reach + 1  # and to the right
        for col in range(width - 1, -1, -1):
            since = 0 if seen[row, col] else since + 1
            out[row, col] |= since <= reach


@njit(parallel=True, cache=True)
def _eroded(filled, out):  # pragma: no cover - compiled
    height, width = filled.shape
    for row in prange(height):
        for col in range(width):
            out[row, col] = filled[row, col] and (row == 0 or filled[row - 1, col]) \
                and (row == height - 1 or filled[row + 1, col]) and (col == 0 or filled[row, col - 1]) \
                and (col == width - 1 or filled[row, col + 1])


def covered_pixels(target_depth: np.ndarray, source_depth: np.ndarray, to_source_eye: np.ndarray,
                   source_projection: np.ndarray, tolerance: float, reach: int, slack: float = 0.0) -> np.ndarray:
    """The target's pixels the source's strokes cover, with a pixel of margin.

    Args:
        target_depth, source_depth: (H, W) top-down window depths (0 near, 1 far) of each view.
        to_source_eye: (4, 4) the target's normalised device coordinates to the source's eye
            space: ``source_view @ inv(target_projection @ target_view)``.
        source_projection: (4, 4) the source's projection.
        tolerance: relative distance within which both see the same surface.
        reach: pixels along a row within which an unseen pixel is filled (0: none).
        slack: pixels beyond the source's first and last pixel centres that still count as
            inside (:data:`vrstyle.reproject.EDGE_SLACK`).

    Returns:
        (H, W) bool.

    Raises:
        ValueError: depth maps that are not 2-D, matrices that are not 4x4, a negative reach.

    >>> from vrstyle.gl.transforms import fov_projection
    >>> p = fov_projection(-0.5, 0.5, 0.5, -0.5, near=0.1, far=10.0)
    >>> wall = np.full((4, 6), 0.9, np.float32)
    >>> bool(covered_pixels(wall, wall, np.linalg.inv(p), p, 0.01, 0, slack=1e-3).all())  # the same view: all seen
    True
    """
    target_depth, source_depth = (np.ascontiguousarray(d, d.dtype if d.dtype in (np.float32, np.float64) else np.float64)
                                  for d in map(np.asarray, (target_depth, source_depth)))
    matrices = [np.ascontiguousarray(m, np.float64) for m in (to_source_eye, source_projection)]
    if target_depth.ndim != 2 or source_depth.ndim != 2:
        raise ValueError(f"depth maps must be (H, W), got {target_depth.shape} and {source_depth.shape}")
    if any(m.shape != (4, 4) for m in matrices):
        raise ValueError("the view matrices must be 4x4")
    if reach < 0:
        raise ValueError(f"reach must be >= 0 pixels, got {reach}")
    seen = np.empty(target_depth.shape, bool)
    _seen(target_depth, source_depth, *matrices, float(tolerance), float(slack), seen)
    filled = np.empty_like(seen)
    _filled(seen, int(reach), filled)
    _eroded(filled, seen)
    return seen


def warm_up() -> None:
    """Compile the pass now for float32 depth maps (seconds the first time on a machine, read
    from numba's cache after), so that a headset's first frames do not wait for it."""
    depth = np.full((2, 2), 0.5, np.float32)
    covered_pixels(depth, depth, np.eye(4), np.eye(4), 0.01, 1)
