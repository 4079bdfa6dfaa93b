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

    numpy tiles are block copies: a tile inside the image is one slice, and a tile across a
    border copies its inside part and mirrors the rows and columns it lacks from itself, so
    cutting runs at memory speed (fancy indexing is only left for tiles that reflect more
    than once, i.e. larger than the image).

    Args:
        images: numpy (H, W, C) / (B, H, W, C), or torch (C, H, W) / (B, C, H, W).
        grid: the grid, planned for this image size.
        indices: which tiles of each image (default all), e.g. one row at a time to bound memory.
        out: numpy only: an array of the result's shape and dtype to cut into, e.g. one reused
            every frame (a fresh array costs its first-touch page faults, about 40% of a cut).

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
    if not isinstance(batched, np.ndarray):
        return _cut_by_index(batched, grid, chosen)
    th, tw = grid.in_shape
    shape = (len(batched) * len(chosen), th, tw) + batched.shape[3:]
    if out is None:
        out = np.empty(shape, batched.dtype)
    elif out.shape != shape or out.dtype != batched.dtype:
        raise GridError(f"cannot cut {shape} {batched.dtype} tiles into an array of {out.shape} {out.dtype}")
    pixels, batched = _as_pixels(out), _as_pixels(batched)
    for k, (image, tile) in enumerate((image, tile) for image in batched for tile in chosen):
        y, x = tile.y - grid.margin, tile.x - grid.margin
        rows, cols = _window(grid.height, y, th), _window(grid.width, x, tw)
        if rows is None or cols is None:
            pixels[k] = image[reflect_indices(grid.height, y, th)][:, reflect_indices(grid.width, x, tw)]
            continue
        (top, bottom), (left, right) = rows, cols
        pixels[k, top:th - bottom, left:tw - right] = image[y + top:y + th - bottom, x + left:x + tw - right]
        _mirror_ends(pixels[k, :, left:tw - right], top, bottom)
        _mirror_ends(pixels[k].swapaxes(0, 1), left, right)
    return out


def _as_pixels(images: np.ndarray) -> np.ndarray:
    """Channels-last images with each pixel as one 2, 4 or 8-byte element (e.g. RGBA uint8 as uint32).

    A view, when the channels are contiguous: copies with a stride (the mirrored columns) then
    move whole pixels instead of one channel at a time.
    """
    size = images.shape[-1] * images.itemsize
    if size in (2, 4, 8) and images.strides[-1] == images.itemsize:
        return images.view(f"u{size}")
    return images


def _window(length: int, start: int, count: int) -> tuple[int, int] | None:
    """(pixels before, pixels after) the image in a window, or None when one reflection cannot fill them.

    Filling by mirroring the window's own pixels needs every mirror image inside it: fewer
    missing pixels on each side than the window holds inside the image.
    """
    before, after = max(0, -start), max(0, start + count - length)
    inside = count - before - after
    return None if before >= inside or after >= inside else (before, after)


def _mirror_ends(window: np.ndarray, before: int, after: int) -> None:
    """Fill the first ``before`` and last ``after`` rows by reflection about the rows next to them."""
    if before:
        window[:before] = window[before + 1:2 * before + 1][::-1]
    if after:
        last = len(window) - after - 1  # the image's last row
        window[last + 1:] = window[last - after:last][::-1]


def _cut_by_index(batched, grid: TileGrid, chosen: list) -> Array:
    """Cutting with index arrays, for torch tensors (any device)."""
    row_axis, col_axis = spatial_axes(batched)
    rows = [reflect_indices(grid.height, r * grid.core_h - grid.margin, grid.in_shape[0]) for r in range(grid.rows)]
    cols = [reflect_indices(grid.width, c * grid.core_w - grid.margin, grid.in_shape[1]) for c in range(grid.cols)]
    return _stack([_take(_take(image, rows[tile.row], row_axis), cols[tile.col], col_axis)
                   for image in batched for tile in chosen])


def pad_frame(images: Array, grid: TileGrid, out: np.ndarray | None = None) -> Array:
    """The image reflected out to the grid's whole input extent (margin on every side).

    Running a network on this and cropping with :func:`crop_frame` is the whole-image
    computation that the grid's tiles reproduce piece by piece; every tile is a window of it
    (:func:`cut_windows`). numpy pads by block copies: the image once into the middle, the
    margins mirrored from it (index arrays only for a margin wider than the image).

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
    rows, cols = _window(grid.height, -m, height), _window(grid.width, -m, width)
    if not isinstance(images, np.ndarray) or rows is None or cols is None:
        padded = _take(_take(images, reflect_indices(grid.height, -m, height), row_axis),
                       reflect_indices(grid.width, -m, width), col_axis)
        return padded if out is None else _fill(out, padded)
    shape = images.shape[:-3] + (height, width, images.shape[-1])
    if out is None:
        out = np.empty(shape, images.dtype)
    elif out.shape != shape or out.dtype != images.dtype:
        raise GridError(f"cannot pad {images.shape} {images.dtype} images into an array of {out.shape} {out.dtype}")
    (top, bottom), (left, right) = rows, cols
    padded = _as_pixels(out if out.ndim == 4 else out[None])
    padded[:, top:height - bottom, left:width - right] = _as_pixels(images if images.ndim == 4 else images[None])
    for frame in padded:
        _mirror_ends(frame[:, left:width - right], top, bottom)
        _mirror_ends(frame.swapaxes(0, 1), left, right)
    return out


def _fill(out: np.ndarray, padded: np.ndarray) -> np.ndarray:
    if out.shape != padded.shape or out.dtype != padded.dtype:
        raise GridError(f"cannot pad into an array of {out.shape} {out.dtype}: "
                        f"the result is {padded.shape} {padded.dtype}")
    out[...] = padded
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
    """Every tile of one image or a batch without copying each: one :func:`pad_frame` (about
    1.5x a memcpy of the frame) and the tiles as its windows, where :func:`cut` writes every
    tile out (1.8x the frame's pixels with halos and overlaps, about 3x the memcpy).

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
