"""Bit packing of ±1 tensors: one bit per value, least significant bit first.

A value ``v`` in {-1, +1} is stored as the bit ``b = (v + 1) / 2`` (``sign(0) = +1``). Rows
are packed independently (one row per output channel for weights), with zero padding bits
up to a whole byte, and checked on the way back in, so a file with the wrong packing is
refused instead of silently giving another network.
"""

from __future__ import annotations

import numpy as np

PACKING = "sign-bits-lsb/1"
"""Name of this packing, stored in model files so a different one is recognised."""


class PackingError(ValueError):
    """Packed bits that do not fit the tensor they should hold."""


def packed_bytes(count: int) -> int:
    """Bytes holding ``count`` bits. ``packed_bytes(1152) == 144``."""
    return (count + 7) // 8


def pack_signs(values: np.ndarray) -> np.ndarray:
    """Pack the signs of ``values`` (O, ...) into (O, ceil(K / 8)) uint8, K = values per row.

    >>> pack_signs(np.array([[1.0, -2.0, 0.0, -1.0, 3.0, -1.0, -1.0, -1.0, 1.0]]))
    array([[21,  1]], dtype=uint8)
    """
    rows = np.asarray(values).reshape(len(values), -1) >= 0
    return np.packbits(rows, axis=1, bitorder="little")


def unpack_signs(bits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The ±1 float32 tensor of ``shape`` packed in ``bits``; :class:`PackingError` if they do not fit.

    >>> unpack_signs(np.array([[21, 1]], dtype=np.uint8), (1, 9)).astype(int).tolist()
    [[1, -1, 1, -1, 1, -1, -1, -1, 1]]
    """
    rows, count = shape[0], int(np.prod(shape[1:]))
    if bits.dtype != np.uint8 or bits.ndim != 2:
        raise PackingError(f"packed bits must be a 2-D uint8 array, got {bits.ndim}-D {bits.dtype}")
    if bits.shape != (rows, packed_bytes(count)):
        raise PackingError(f"packed bits of shape {bits.shape} cannot hold {rows} rows of {count} signs "
                           f"(expected {(rows, packed_bytes(count))})")
    unpacked = np.unpackbits(bits, axis=1, bitorder="little")
    if unpacked[:, count:].any():
        raise PackingError("padding bits after the last sign are set: not this packing")
    return (unpacked[:, :count].astype(np.float32) * 2 - 1).reshape(shape)


def pack_channels(bits: np.ndarray) -> np.ndarray:
    """Pack booleans (..., C, H, W) along channels into (..., H, W, words) uint64, zero-padded.

    The layout the popcount convolution reads: one pixel's channels in consecutive words.
    """
    packed = np.packbits(np.moveaxis(bits, -3, -1), axis=-1, bitorder="little")
    pad = -packed.shape[-1] % 8
    if pad:
        packed = np.concatenate([packed, np.zeros(packed.shape[:-1] + (pad,), np.uint8)], axis=-1)
    return np.ascontiguousarray(packed).view(np.uint64)
