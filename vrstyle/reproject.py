"""Reprojection between rendered views with depth: where a pixel of one view is seen in another.

A renderer knows each eye's depth and pose, so the correspondence between the two eyes, or
between consecutive frames of a moving head, is exact wherever a surface is seen in both. This
module finds it (numpy only: the headset client may use it without torch) and measures how
far two images disagree there: the comfort metrics, left/right and temporal warp error.

Conventions are OpenGL's and :mod:`vrstyle.gl.transforms`': views are world-to-eye matrices,
window depth runs from 0 (near plane) to 1 (far plane), images are top-down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import tiles

DEPTH_TOLERANCE = 0.01
"""Relative distance within which a reprojected point is the surface the other view sees there;
farther behind it, the point is hidden in that view (an occlusion)."""
EDGE_SLACK = 1e-3
"""Pixels beyond the source's first and last pixel centres within which a reprojected point still
counts as inside (sampled at the edge). Eyes with the same vertical field of view map whole rows
exactly onto the other eye's first and last pixel centres; without the slack those ties go
either way with rounding (float64 here, float32 on a GPU) and a skipped tile could lose a row."""
FILL_REACH = 4
"""Pixels along a row within which a disoccluded pixel takes the strokes of the nearest seen
background (:func:`fill_disocclusions`): most of what one eye sees and the other does not is
a sliver of one or two pixels along silhouettes."""


@dataclass(frozen=True)
class View:
    """One rendered view: world-to-eye ``view`` (4, 4), ``projection`` (4, 4), window ``depth`` (H, W)."""

    view: np.ndarray
    projection: np.ndarray
    depth: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.depth.shape


def eye_distance(depth: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Distance along the view axis of window depths under a perspective ``projection``.

    >>> from vrstyle.gl.transforms import fov_projection
    >>> p = fov_projection(-0.5, 0.5, 0.5, -0.5, near=0.1, far=10.0)
    >>> eye_distance(np.array([0.0, 1.0]), p).round(6).tolist()
    [0.1, 10.0]
    """
    return projection[2, 3] / ((np.asarray(depth, np.float64) * 2 - 1) + projection[2, 2])


def pixel_centres(height: int, width: int) -> np.ndarray:
    """(H, W, 2) (x, y) coordinates of pixel centres, 0 at the image's left and top edges."""
    y, x = np.mgrid[0:height, 0:width] + 0.5
    return np.stack([x, y], -1)


def to_world(view: View, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """World positions (..., 3) of ``view``'s ``pixels`` (..., 2) at window ``depth`` (...)."""
    height, width = view.shape
    ndc = np.stack([pixels[..., 0] / width * 2 - 1, 1 - pixels[..., 1] / height * 2, depth * 2 - 1,
                    np.ones(depth.shape)], -1)
    world = ndc @ np.linalg.inv(view.projection @ view.view).T
    return world[..., :3] / world[..., 3:]


def to_pixels(view: View, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pixel coordinates (..., 2), distance along the view axis (...)) of world ``points`` in ``view``."""
    height, width = view.shape
    eye = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1) @ view.view.T
    clip = eye @ view.projection.T
    w = np.where(np.abs(clip[..., 3]) < 1e-12, 1e-12, clip[..., 3])
    x, y = clip[..., 0] / w, clip[..., 1] / w
    return np.stack([(x + 1) / 2 * width, (1 - y) / 2 * height], -1), -eye[..., 2]


def correspondence(target: View, source: View, tolerance: float = DEPTH_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel of ``target`` is seen in ``source``.

    Returns:
        (H, W, 2) pixel coordinates in ``source``, and the (H, W) mask of pixels whose surface
        ``source`` sees: in its image, in front of it, and not hidden behind a nearer surface
        (``source``'s own distance there agrees within ``tolerance``).
    """
    height, width = source.shape
    pixels, distance = to_pixels(source, to_world(target, pixel_centres(*target.shape), target.depth))
    low = 0.5 - EDGE_SLACK
    inside = (pixels[..., 0] >= low) & (pixels[..., 0] <= width - low) & (pixels[..., 1] >= low) \
        & (pixels[..., 1] <= height - low) & (distance > 0)
    col = np.clip(np.floor(pixels[..., 0]).astype(int), 0, width - 1)
    row = np.clip(np.floor(pixels[..., 1]).astype(int), 0, height - 1)
    there = eye_distance(source.depth[row, col], source.projection)
    visible = inside & (np.abs(there - distance) <= tolerance * np.maximum(distance, 1e-6))
    return pixels, visible


def fill_disocclusions(pixels: np.ndarray, visible: np.ndarray, depth: np.ndarray,
                       reach: int = FILL_REACH) -> tuple[np.ndarray, np.ndarray]:
    """Thin disocclusions filled from the background beside them, as the reprojection shader does.

    A pixel the source does not see looks along its row, up to ``reach`` pixels each way, for
    the nearest pixel the source does see; of the two sides, the farther surface (the larger
    window ``depth``; the right on a tie) is the background the sliver belongs to. The pixel
    takes the source position mirrored about that neighbour's: its source position moved on
    by the same distance, so the background's strokes continue into the sliver, mirrored,
    instead of one colour smeared across it.

    Args:
        pixels: (H, W, 2) source pixel coordinates of each target pixel (:func:`correspondence`).
        visible: (H, W) pixels the source sees.
        depth: (H, W) the target's window depth.
        reach: pixels to look each way (0: no fill).

    Returns:
        ``pixels`` and ``visible`` with the filled pixels added.

    >>> row = np.array([[True, False, True, True]])
    >>> at = np.stack([np.arange(4.0) + 10, np.zeros(4)], -1)[None]
    >>> depth = np.array([[0.2, 0.5, 0.9, 0.9]])  # a near surface on the left, background right
    >>> filled, seen = fill_disocclusions(at, row, depth, reach=2)
    >>> filled[0, 1].tolist(), bool(seen.all())  # pixel 1 mirrored about pixel 2 is pixel 3: x 13
    ([13.0, 0.0], True)
    """
    pixels, filled = pixels.copy(), visible.copy()
    width = visible.shape[1]
    found = {}
    for side in (-1, 1):
        steps = np.zeros(visible.shape, int)
        for k in range(1, reach + 1):
            columns = np.arange(width) + side * k
            inside = (columns >= 0) & (columns < width)
            hit = (steps == 0) & inside & visible[:, np.clip(columns, 0, width - 1)]
            steps[hit] = k
        found[side] = steps
    rows, cols = np.nonzero(~visible & ((found[-1] > 0) | (found[1] > 0)))
    left, right = found[-1][rows, cols], found[1][rows, cols]
    left_depth = np.where(left > 0, depth[rows, np.maximum(cols - left, 0)], -np.inf)
    right_depth = np.where(right > 0, depth[rows, np.minimum(cols + right, width - 1)], -np.inf)
    offset = np.where(right_depth >= left_depth, right, -left)
    pixels[rows, cols] = pixels[rows, cols + offset]
    pixels[rows, cols, 0] += offset
    filled[rows, cols] = True
    return pixels, filled


def sample(image: np.ndarray, pixels: np.ndarray, cubic: bool = False) -> np.ndarray:
    """Samples (H, W, C) float of a top-down ``image`` at continuous ``pixels`` (H, W, 2):
    bilinear, or with ``cubic`` Catmull-Rom over 4 x 4 pixels (sharper: strokes carried from
    frame to frame blur less; for an integer image clamped to its dtype's range, as a GPU clamps
    normalised texels); edges repeat.

    >>> line = np.array([[[0.0], [0.0], [90.0], [0.0], [0.0]]])
    >>> at = np.array([[[2.75, 0.5]]])
    >>> float(sample(line, at)[0, 0, 0]), float(sample(line, at, cubic=True)[0, 0, 0])
    (67.5, 78.046875)
    """
    height, width = image.shape[:2]
    limits = (np.iinfo(image.dtype).min, np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else None
    image = image.astype(np.float32)
    if cubic:
        u, v = pixels[..., 0] - 0.5, pixels[..., 1] - 0.5
        x0, y0 = np.floor(u).astype(int), np.floor(v).astype(int)
        wx, wy = _catmull_rom(u - x0), _catmull_rom(v - y0)
        out = 0.0
        for j in range(4):
            row = np.clip(y0 + j - 1, 0, height - 1)
            for i in range(4):
                out = out + (wy[j] * wx[i])[..., None] * image[row, np.clip(x0 + i - 1, 0, width - 1)]
        return out if limits is None else np.clip(out, *limits)
    u = np.clip(pixels[..., 0] - 0.5, 0, width - 1)
    v = np.clip(pixels[..., 1] - 0.5, 0, height - 1)
    x0, y0 = np.minimum(u.astype(int), width - 2), np.minimum(v.astype(int), height - 2)
    fx, fy = (u - x0)[..., None], (v - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def reproject(image: np.ndarray, fresh: np.ndarray, target: View, source: View, weight: float = 1.0,
              fill: int = 0) -> tuple[np.ndarray, float]:
    """``source``'s uint8 ``image`` drawn into ``target``'s ``fresh`` one where ``target`` sees
    the same surface: the CPU twin of ``shaders/reproject.frag`` on byte textures (the
    mirror's), for benchmarks without a GL context. On sRGB textures (a headset's swapchain
    images) GL samples and blends in linear light instead.

    Args:
        image: (H, W, C) uint8, seen from ``source``.
        fresh: (H, W, C) uint8, seen from ``target``; kept where ``source`` does not see its surface.
        target, source: the two views.
        weight: the reprojected image's share where drawn (1: taken as is; the temporal pass
            blends :data:`vrstyle.settings.CARRIED`).
        fill: thin disocclusions filled within this many pixels (:func:`fill_disocclusions`).

    Returns:
        (the blended (H, W, C) uint8 image, the share of ``target``'s pixels drawn).

    >>> from vrstyle.gl.transforms import fov_projection
    >>> eye = View(np.eye(4), fov_projection(-0.5, 0.5, 0.5, -0.5, near=0.1, far=10.0), np.full((4, 4), 0.5))
    >>> image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    >>> out, drawn = reproject(image, np.zeros_like(image), eye, eye, weight=0.5)
    >>> bool((out == np.rint(image * 0.5)).all()), drawn
    (True, 1.0)
    """
    pixels, drawn = correspondence(target, source)
    if fill:
        pixels, drawn = fill_disocclusions(pixels, drawn, target.depth, fill)
    out = fresh.astype(np.float32)
    out[drawn] = weight * sample(image, pixels, cubic=True)[drawn] + (1 - weight) * out[drawn]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), float(drawn.mean())


def _catmull_rom(t: np.ndarray) -> list[np.ndarray]:
    """The four Catmull-Rom weights of the pixels at -1, 0, 1, 2 for a fraction ``t`` past pixel 0."""
    t2, t3 = t * t, t * t * t
    return [(-t3 + 2 * t2 - t) / 2, (3 * t3 - 5 * t2 + 2) / 2, (-3 * t3 + 4 * t2 + t) / 2, (t3 - t2) / 2]


def warp_error(target_image: np.ndarray, source_image: np.ndarray, target: View, source: View,
               tolerance: float = DEPTH_TOLERANCE) -> tuple[float, float]:
    """How far two views' images disagree on the surfaces both see.

    Returns:
        (mean absolute difference in grey levels over the channels of the pixels of
        ``target`` that ``source`` sees, the share of ``target``'s pixels that is).
    """
    pixels, visible = correspondence(target, source, tolerance)
    if not visible.any():
        return float("nan"), 0.0
    warped = sample(source_image, pixels)
    difference = np.abs(warped - target_image.astype(np.float32))[visible]
    return float(difference.mean()), float(visible.mean())


def stereo_skip(grid: tiles.TileGrid, views: list[View], fill: int = FILL_REACH) -> np.ndarray:
    """(2 * len(grid),) bool: the stereo frame's tiles to leave out when the right eye takes the
    left eye's strokes: the right eye's tiles whose every pixel, and its neighbours (a margin for
    a GPU's rounding), the left eye sees or fills within ``fill`` pixels
    (:func:`correspondence` and :func:`fill_disocclusions`, compiled into one pass:
    :func:`vrstyle.kernels.coverage.covered_pixels`; :func:`tiles.covered_tiles`)."""
    from vrstyle.kernels.coverage import covered_pixels

    target, source = views[1], views[0]
    to_source_eye = source.view @ np.linalg.inv(target.projection @ target.view)
    covered = covered_pixels(target.depth, source.depth, to_source_eye, source.projection, DEPTH_TOLERANCE, fill,
                             EDGE_SLACK)
    return np.concatenate([np.zeros(len(grid), bool), tiles.covered_tiles(grid, covered)])
