"""Cutting tiles out of images and cropping their halo, for numpy and torch alike.

Layouts follow each library's convention: numpy images are channels-last ``(B, H, W, C)``,
torch images channels-first ``(B, C, H, W)``; the batch axis is optional, and a stereo frame
is simply a batch of two. Tiles come out image-major: tile ``t`` of image ``b`` is at
``b * len(grid) + t``.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

from tiles.grid import GridError, TileGrid

Array = TypeVar("Array")


def reflect_indices(length: int, start: int, count: int) -> np.ndarray:
    """Indices ``start .. start + count - 1`` of an axis of ``length``, reflected into range.

    Reflection without repeating the edge pixel (as ``numpy.pad(mode="reflect")`` and
    ``torch.nn.ReflectionPad2d``), repeated as often as needed, so tiles may be larger than
    the image.

    >>> reflect_indices(4, -2, 8).tolist()
    [2, 1, 0, 1, 2, 3, 2, 1]
    """
    positions = np.arange(start, start + count)
    if length == 1:
        return np.zeros(count, dtype=np.intp)
    period = 2 * (length - 1)
    folded = np.mod(positions, period)
    return np.where(folded < length, folded, period - folded).astype(np.intp)


def spatial_axes(images) -> tuple[int, int]:
    """(row axis, column axis): channels-last for numpy, channels-first for torch."""
    return (-3, -2) if isinstance(images, np.ndarray) else (-2, -1)


def check_image(images, grid: TileGrid) -> None:
    """Raise :class:`GridError` unless ``images`` is one image or a batch of the grid's size."""
    ndim = getattr(images, "ndim", None)
    if ndim not in (3, 4):
        raise GridError(f"expected an image (3 dims) or a batch of images (4 dims), got shape "
                        f"{tuple(getattr(images, 'shape', ()))}")
    row_axis, col_axis = spatial_axes(images)
    size = (images.shape[row_axis], images.shape[col_axis])
    if size != (grid.height, grid.width):
        raise GridError(f"image is {size[0]}x{size[1]} but the grid was planned for "
                        f"{grid.height}x{grid.width}")


def cut(images: Array, grid: TileGrid, indices: Sequence[int] | None = None, out: np.ndarray | None = None) -> Array:
    """Cut tiles (core + overlap + halo) out of one image or a batch.

    numpy tiles are cut by a compiled copy (:func:`tiles.stream.copy_windows`): whole rows
    with streaming stores, the rows and columns a tile lacks read from their mirror images,
    so cutting runs at memory speed. Fancy indexing is left for tiles that reflect more than
    once (larger than the image) and for a grid that is the whole image in one tile, which
    takes one copy either way and so does not load the compiler (numba) for it.

    Args:
        images: numpy (H, W, C) / (B, H, W, C), or torch (C, H, W) / (B, C, H, W).
        grid: the grid, planned for this image size.
        indices: which tiles of each image (default all), e.g. one row at a time to bound memory.
        out: numpy only: an array of the result's shape and dtype to cut into, e.g. one reused
            every frame (a fresh array costs its first-touch page faults); C-contiguous.

    Returns:
        (B * n, th, tw, C) numpy or (B * n, C, th, tw) torch, ``(th, tw) = grid.in_shape``,
        ``n`` the number of tiles cut per image; pixels outside the image are reflected in.

    Raises:
        GridError: the images do not match the grid, or ``out`` does not fit the tiles.

    >>> from tiles.grid import plan_grid
    >>> g = plan_grid(6, 10, tile=4, halo=2, overlap=0, align=2)
    >>> cut(np.zeros((2, 6, 10, 3), np.uint8), g).shape
    (12, 8, 8, 3)
    """
    check_image(images, grid)
    batched = images if images.ndim == 4 else images[None]
    chosen = list(grid.tiles()) if indices is None else [grid.tile(i) for i in indices]
    th, tw = grid.in_shape
    starts = np.array([(t.y - grid.margin, t.x - grid.margin) for t in chosen], np.int64).reshape(-1, 2)
    whole_image = len(grid) == 1 and grid.margin == 0
    if not isinstance(batched, np.ndarray) or whole_image or not all(
            _reflects_once(grid.height, y, th) and _reflects_once(grid.width, x, tw) for y, x in starts):
        cutting = _cut_by_index(batched, grid, chosen)
        return cutting if out is None else _fill(out, cutting)
    shape = (len(batched) * len(chosen), th, tw) + batched.shape[3:]
    return _copy_windows(batched, starts, _target(out, shape, batched.dtype))


def _reflects_once(length: int, start: int, count: int) -> bool:
    """Whether one reflection fills a window: fewer pixels outside on each side than inside."""
    before, after = max(0, -start), max(0, start + count - length)
    return before < count - before - after and after < count - before - after


def _target(out: np.ndarray | None, shape: tuple, dtype) -> np.ndarray:
    """``out`` checked to take a result of ``shape`` and ``dtype``, or a new array for it, its
    rows aligned to cache lines as the streaming copy writes them best."""
    if out is None:
        from tiles.stream import aligned_empty  # numba's import (50 MB, most of a second) only where it is used

        return aligned_empty(shape, dtype)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise GridError(f"cannot write {shape} {np.dtype(dtype)} into an array of {out.shape} {out.dtype}"
                        + ("" if out.flags.c_contiguous else " that is not C-contiguous"))
    return out


def _copy_windows(images: np.ndarray, starts: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Windows of (B, H, W, C) numpy ``images`` at ``starts`` into ``out`` (B * T, th, tw, C)."""
    from tiles.stream import as_rows, copy_windows, element_size

    pixel = images.shape[3] * images.itemsize
    size = element_size(pixel, out)
    rows = out.view(f"u{size}").reshape(out.shape[:2] + (out.shape[2] * pixel // size,))
    copy_windows(as_rows(images, size), starts, rows, pixel // size)
    return out


def _cut_by_index(batched, grid: TileGrid, chosen: list) -> Array:
    """Cutting with index arrays: torch tensors (any device), and tiles larger than the image."""
    row_axis, col_axis = spatial_axes(batched)
    rows = [reflect_indices(grid.height, r * grid.core_h - grid.margin, grid.in_shape[0]) for r in range(grid.rows)]
    cols = [reflect_indices(grid.width, c * grid.core_w - grid.margin, grid.in_shape[1]) for c in range(grid.cols)]
    return _stack([_take(_take(image, rows[tile.row], row_axis), cols[tile.col], col_axis)
                   for image in batched for tile in chosen])


def pad_frame(images: Array, grid: TileGrid, out: np.ndarray | None = None) -> Array:
    """The image reflected out to the grid's whole input extent (margin on every side).

    Running a network on this and cropping with :func:`crop_frame` is the whole-image
    computation that the grid's tiles reproduce piece by piece; every tile is a window of it
    (:func:`cut_windows`). numpy pads as :func:`cut` cuts, the padded frame one window
    (index arrays only for a margin wider than the image).

    Args:
        images: numpy (H, W, C) / (B, H, W, C), or torch (C, H, W) / (B, C, H, W).
        grid: the grid, planned for this image size.
        out: numpy only: an array of the result's shape and dtype to pad into.

    Returns:
        The padded images, ``grid.rows * grid.core_h + 2 * grid.margin`` rows and
        ``grid.cols * grid.core_w + 2 * grid.margin`` columns, in the input's layout.

    Raises:
        GridError: the images do not match the grid, or ``out`` does not fit.

    >>> from tiles.grid import plan_grid
    >>> g = plan_grid(6, 10, tile=4, halo=2, overlap=0, align=2)  # 2 x 3 tiles of 4 px, 2 px margin
    >>> padded = pad_frame(np.arange(60, dtype=np.uint8).reshape(6, 10, 1), g)
    >>> padded.shape, padded[2, :, 0].tolist()
    ((12, 16, 1), [2, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 8, 7, 6, 5])
    """
    check_image(images, grid)
    row_axis, col_axis = spatial_axes(images)
    m = grid.margin
    height, width = grid.rows * grid.core_h + 2 * m, grid.cols * grid.core_w + 2 * m
    if not isinstance(images, np.ndarray) or not (_reflects_once(grid.height, -m, height) and
                                                  _reflects_once(grid.width, -m, width)):
        padded = _take(_take(images, reflect_indices(grid.height, -m, height), row_axis),
                       reflect_indices(grid.width, -m, width), col_axis)
        return padded if out is None else _fill(out, padded)
    batched = images if images.ndim == 4 else images[None]
    target = _target(out, images.shape[:-3] + (height, width, images.shape[-1]), images.dtype)
    _copy_windows(batched, np.array([[-m, -m]]), target if target.ndim == 4 else target[None])
    return target


def copy_frames(images: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[...] = images`` with streaming stores, for frames another process reads next (e.g.
    a shared-memory frame ring) rather than this core: no destination line is read before it
    is written, about a fifth faster than ``np.copyto`` at a headset's frame size.

    Args:
        images: numpy (H, W, C) or (B, H, W, C), each row's pixels contiguous (else copied first).
        out: C-contiguous, of the same shape and dtype.

    Returns:
        ``out``.

    Raises:
        GridError: ``out`` does not take ``images``.

    >>> frames = np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3)
    >>> bool((copy_frames(frames[:, ::-1], np.empty_like(frames)) == frames[:, ::-1]).all())
    True
    """
    target = _target(out, images.shape, images.dtype)
    batched = images if images.ndim == 4 else images[None]
    _copy_windows(batched, np.zeros((1, 2), np.int64), target if target.ndim == 4 else target[None])
    return target


def _fill(out: np.ndarray, result: np.ndarray) -> np.ndarray:
    _target(out, result.shape, result.dtype)[...] = result
    return out


class TileWindows:
    """A frame's tiles as windows of its padded copy (:func:`cut_windows`), indexed like
    :func:`cut`'s result (image-major): ``windows[k]`` is tile ``k``, ``windows[a:b]`` tiles
    ``a..b-1``, a view when they lie in one row of the grid, else a copy of just those tiles.

    Read-only: every window shares pixels with its neighbours.
    """

    def __init__(self, padded: np.ndarray, grid: TileGrid):
        frames = padded if padded.ndim == 4 else padded[None]
        b, r, c, p = frames.strides
        th, tw = grid.in_shape
        self.grid, self.padded = grid, padded
        #: (B, rows, cols, th, tw, C): tile (row, col) of image b starts at (row * core_h, col * core_w).
        self.views = np.lib.stride_tricks.as_strided(
            frames, (len(frames), grid.rows, grid.cols, th, tw, frames.shape[3]),
            (b, r * grid.core_h, c * grid.core_w, r, c, p), writeable=False)

    def __len__(self) -> int:
        return len(self.views) * len(self.grid)

    @property
    def shape(self) -> tuple[int, ...]:
        """What :func:`cut` would return."""
        return (len(self),) + self.views.shape[3:]

    def __getitem__(self, key: int | slice) -> np.ndarray:
        if not isinstance(key, slice):
            return self.views[self._place(range(len(self))[key])]
        picked = range(len(self))[key]
        if not picked:
            return np.empty((0,) + self.shape[1:], self.padded.dtype)
        (image, row, col), end = self._place(picked[0]), self._place(picked[-1])
        if picked.step == 1 and end[:2] == (image, row):
            return self.views[image, row, col:end[2] + 1]
        return np.stack([self.views[self._place(k)] for k in picked])

    def _place(self, index: int) -> tuple[int, int, int]:
        """(image, row, col) of tile ``index``."""
        image, tile = divmod(index, len(self.grid))
        return (image,) + divmod(tile, self.grid.cols)


def cut_windows(images: np.ndarray, grid: TileGrid, out: np.ndarray | None = None) -> TileWindows:
    """Every tile of one image or a batch without copying each: one :func:`pad_frame` (1.1x the
    frame's pixels) and the tiles as its windows, where :func:`cut` writes every tile out
    (1.8x the frame's pixels with halos and overlaps).

    Args:
        images: numpy (H, W, C) or (B, H, W, C).
        grid: the grid, planned for this image size.
        out: an array to pad into (see :func:`pad_frame`); the windows are views of it.

    Returns:
        The tiles, indexed like :func:`cut`'s result.

    Raises:
        GridError: the images do not match the grid, or ``out`` does not fit.

    >>> from tiles.grid import plan_grid
    >>> g = plan_grid(6, 10, tile=4, halo=2, overlap=0, align=2)
    >>> image = np.arange(60, dtype=np.uint8).reshape(6, 10, 1)
    >>> windows = cut_windows(image, g)
    >>> windows.shape, bool((windows[1:3] == cut(image, g)[1:3]).all())
    ((6, 8, 8, 1), True)
    """
    if not isinstance(images, np.ndarray):
        raise GridError(f"cut_windows takes numpy images, got {type(images).__name__}; use cut")
    return TileWindows(pad_frame(images, grid, out), grid)


def crop_frame(padded: Array, grid: TileGrid) -> Array:
    """Undo :func:`pad_frame`: the ``height x width`` image inside the margin."""
    m = grid.margin
    if isinstance(padded, np.ndarray):
        return padded[..., m:m + grid.height, m:m + grid.width, :]
    return padded[..., m:m + grid.height, m:m + grid.width]


def crop_halo(tiles: Array, grid: TileGrid) -> Array:
    """Cut the halo off inferred tiles, keeping core + overlap (``grid.out_shape``).

    Tiles may be larger than ``grid.in_shape`` at the far edges (a network that rounds odd
    sizes up); only the leading ``halo`` pixels are dropped on the near edges.
    """
    h, w = grid.out_shape
    top = grid.halo
    if isinstance(tiles, np.ndarray):
        return tiles[..., top:top + h, top:top + w, :]
    return tiles[..., top:top + h, top:top + w]


def _take(image, indices: np.ndarray, axis: int):
    if isinstance(image, np.ndarray):
        return np.take(image, indices, axis=axis)
    import torch

    index = torch.as_tensor(indices, device=image.device)
    return torch.index_select(image, image.ndim + axis, index)


def _stack(pieces: list):
    if isinstance(pieces[0], np.ndarray):
        return np.stack(pieces)
    import torch

    return torch.stack(pieces)
