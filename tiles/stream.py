"""Compiled window copies with streaming stores: the block copies behind :func:`tiles.cut`.

A frame's tiles are 1.8x its pixels. Written with ordinary stores, every destination cache
line is first read from memory and then written back (a tile row of a few KB is too short for
the C library's memcpy to switch to streaming stores), so cutting moved about three times a
memcpy's bytes. Here each destination row is written 64 bytes at a time with non-temporal
stores, which skip that read and bypass the caches (the tiles are not read back by this core
soon), then one fence makes them visible to other processes, e.g. workers reading a shared
frame ring. Tiles side by side are cut a row at a time across all of them, so each source
row is read from memory once for every tile that holds it. Rows outside the image are read
from their mirror row and columns outside from their mirror columns (a reversed load where a
pixel is one element, e.g. RGBA bytes moved as uint32; RGB bytes go a pixel at a time), so a
tile across a border costs no second pass. With both, cutting a frame's tiles costs about
one memcpy of the frame (``benchmarks/tiles_speed.py``).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

#: Bytes one streaming store writes: a cache line, and an AVX-512 register where there is one.
LINE = 64


def _line_streamer(reversing: bool):
    """An intrinsic ``(target, at, source, start)`` that copies ``n`` elements making a LINE
    with one vector load and one non-temporal store, ``target[at:at + n] = source[start:start + n]``
    (reversed, ``[::-1]``, if ``reversing``); ``target`` must be LINE-aligned at ``at``."""

    @intrinsic
    def stream_line(typingctx, target, at, source, start):
        def codegen(context, builder, sig, args):
            element = context.get_data_type(sig.args[0].dtype)
            count = LINE * 8 // element.width
            line = ir.VectorType(element, count)
            target_data = context.make_array(sig.args[0])(context, builder, args[0]).data
            source_data = context.make_array(sig.args[2])(context, builder, args[2]).data
            value = builder.load(builder.bitcast(builder.gep(source_data, [args[3]]), line.as_pointer()), align=1)
            if reversing:
                order = ir.Constant(ir.VectorType(ir.IntType(32), count), list(range(count - 1, -1, -1)))
                value = builder.shuffle_vector(value, value, order)
            pointer = builder.bitcast(builder.gep(target_data, [args[1]]), line.as_pointer())
            store = builder.store(value, pointer, align=LINE)
            store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))

        return types.void(target, at, source, start), codegen

    return stream_line


_stream_line = _line_streamer(reversing=False)
_stream_reversed_line = _line_streamer(reversing=True)


@intrinsic
def _store_fence(typingctx):
    """Order the streaming stores before anything that follows (they are weakly ordered)."""
    signature = types.void()

    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")

    return signature, codegen


@njit(cache=True, inline="always")
def _mirror(i: int, size: int) -> int:
    """Index ``i`` reflected once about the image's first or last pixel."""
    if i < 0:
        return -i
    if i >= size:
        return 2 * size - 2 - i
    return i


@njit(cache=True, inline="always")
def _gather(target, at, source, x, width, units, first, count):  # pragma: no cover - compiled
    """Elements ``first..first+count-1`` of a window row starting at pixel ``x``, each read
    from its pixel's mirror where outside the image, into ``target`` from ``at``."""
    column, unit, done = first // units, first % units, 0
    while done < count:
        pixel = _mirror(x + column, width) * units
        if units == 3 and unit == 0 and done + 3 <= count:  # RGB bytes: no inner loop, twice as fast
            target[at + done] = source[pixel]
            target[at + done + 1] = source[pixel + 1]
            target[at + done + 2] = source[pixel + 2]
            done += 3
        else:
            run = min(units - unit, count - done)
            for i in range(run):
                target[at + done + i] = source[pixel + unit + i]
            done += run
        column, unit = column + 1, 0


@njit(cache=True, inline="always")
def _copy_part(target, at, source, x, width, units, first, count):  # pragma: no cover - compiled
    """Elements ``first..first+count-1`` of a window row into ``target`` from ``at``: a plain
    (vectorised) copy where they all lie inside the image, else :func:`_gather`."""
    start = x * units + first
    if start >= 0 and start + count <= width * units:
        for i in range(count):
            target[at + i] = source[start + i]
    else:
        _gather(target, at, source, x, width, units, first, count)


@njit(cache=True, inline="always")
def _copy_row(target, source, x, width, units, line):  # pragma: no cover - compiled
    """One window row (pixels ``x..``, reflected where outside the image) into ``target``,
    whole cache lines streamed: each from one forward or reversed load of the source where
    its pixels come in one run, else gathered element by element into ``line`` first."""
    count, step = len(target), len(line)
    inside = max(0, -x) * units, (min(width, x + count // units) - x) * units  # [first, stop)
    done = min(count, (LINE - target.ctypes.data % LINE) % LINE // target.itemsize)
    _copy_part(target, 0, source, x, width, units, 0, done)
    while done + step <= count:
        if inside[0] <= done and done + step <= inside[1]:
            _stream_line(target, done, source, x * units + done)
        elif units == 1 and done + step <= inside[0]:
            _stream_reversed_line(target, done, source, -x - done - step + 1)
        elif units == 1 and done >= inside[1]:
            _stream_reversed_line(target, done, source, 2 * width - 2 - x - done - step + 1)
        else:
            _gather(line, 0, source, x, width, units, done, step)
            _stream_line(target, done, line, 0)
        done += step
    _copy_part(target, done, source, x, width, units, done, count - done)


@njit(cache=True, nogil=True)
def copy_windows(images, starts, out, units):  # pragma: no cover - compiled
    """Copy windows of every image into ``out``, reflecting what lies outside.

    Args:
        images: (B, H, W * units), each row contiguous (:func:`as_rows`).
        starts: (T, 2) int64, each window's top-left (y, x) in pixels, possibly negative.
        out: (B * T, th, tw * units), C-contiguous, aligned to its itemsize, the dtype of
            ``images``; window ``t`` of image ``b`` goes to ``out[b * T + t]``.
        units: elements per pixel.

    A window may reach past each side of the image by less than the image's size (one
    reflection fills it).
    """
    height, width = images.shape[1], images.shape[2] // units
    line = np.empty(LINE // out.itemsize, out.dtype)
    count = starts.shape[0]
    for image in range(images.shape[0]):
        first = 0
        while first < count:  # windows in a run at the same height share each source row
            stop = first + 1
            while stop < count and starts[stop, 0] == starts[first, 0]:
                stop += 1
            for r in range(out.shape[1]):
                source = images[image, _mirror(starts[first, 0] + r, height)]
                for t in range(first, stop):
                    _copy_row(out[image * count + t, r], source, starts[t, 1], width, units, line)
            first = stop
    _store_fence()


def aligned_empty(shape: tuple, dtype) -> np.ndarray:
    """``np.empty`` starting on a cache line (numpy's own allocations start on 16 bytes)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buffer = np.empty(size + LINE, np.uint8)
    start = -buffer.ctypes.data % LINE
    return buffer[start:start + size].view(dtype).reshape(shape)


def element_size(pixel: int, *arrays: np.ndarray) -> int:
    """The widest of 8, 4, 2 or 1 bytes that divides a pixel and every array's address: the
    unit :func:`copy_windows` moves (RGBA uint8 pixels go as one uint32 each)."""
    return next(size for size in (8, 4, 2, 1) if pixel % size == 0 and all(a.ctypes.data % size == 0 for a in arrays))


def as_rows(images: np.ndarray, size: int) -> np.ndarray:
    """(B, H, W, C) as (B, H, W * C * itemsize / size) elements of ``size`` bytes: a view where
    each row's pixels are contiguous, else a copy."""
    b, h, w, c = images.shape
    if images.strides[2:] != (c * images.itemsize, images.itemsize):
        images = np.ascontiguousarray(images)
    return np.lib.stride_tricks.as_strided(images.view(f"u{size}"), (b, h, w * c * images.itemsize // size),
                                           images.strides[:2] + (size,))
