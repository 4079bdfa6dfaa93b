"""Compressed tile payloads for links to other hosts: JPEG (libjpeg-turbo, through simplejpeg) or
lossless zstd.

A Quest 3 stereo frame is 27 MB of RGB: 2.5 GB/s at 90 Hz, more than a network link carries.
Tiles to and from workers on other hosts are therefore compressed, each tile on its own (a
worker may get any of them), on as many threads as there are cores: two message parts replace
the pixels, an int32 array
``[quality, size_0, ..., size_{n-1}]`` and the encodings back to back. JPEG drops alpha (the
tiles arrive RGB); zstd keeps every byte. On one host, shared memory moves nothing, so there is
nothing to compress.

>>> tiles = np.random.default_rng(0).integers(0, 256, (2, 16, 24, 3), np.uint8)
>>> sizes, blob = encode(tiles, "zstd")
>>> bool((decode(sizes, blob, "zstd", tiles.shape) == tiles).all())
True
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import simplejpeg
import zstandard

CODECS = ("auto", "none", "jpeg", "zstd")
"""What a client may ask for: ``auto`` is JPEG to workers on other hosts and nothing else."""
QUALITY = 90
"""JPEG quality by default: about 41 dB PSNR on photos at a twelfth of the bytes."""
ZSTD_LEVEL = 1
"""Fast: tiles are compressed per frame, on the critical path."""
SIZES_DTYPE = np.dtype("<i4")


class CodecError(ValueError):
    """A payload that does not decode to the tiles its header announces."""


def encode(tiles: np.ndarray, codec: str, quality: int = QUALITY) -> tuple[np.ndarray, bytes]:
    """Each tile compressed on its own.

    Args:
        tiles: (N, H, W, 3 or 4) uint8 (views are fine).
        codec: ``jpeg`` or ``zstd``.
        quality: JPEG quality 1..100 (the other side uses it for its replies).

    Returns:
        (the int32 ``[quality, size_0, ...]`` part, the encodings back to back).

    Raises:
        ValueError: an unknown codec or a quality out of range.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {quality}")
    if codec == "jpeg":
        space = "RGB" if tiles.shape[-1] == 3 else "RGBX"

        def one(tile: np.ndarray) -> bytes:
            return simplejpeg.encode_jpeg(np.ascontiguousarray(tile), quality=quality, colorspace=space)
    elif codec == "zstd":
        def one(tile: np.ndarray) -> bytes:
            return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(np.ascontiguousarray(tile).data)
    else:
        raise ValueError(f"unknown codec {codec!r}; use jpeg or zstd")
    pieces = list(_pool().map(one, tiles)) if len(tiles) > 1 else [one(tiles[0])]
    sizes = np.array([quality, *(len(piece) for piece in pieces)], SIZES_DTYPE)
    return sizes, b"".join(pieces)


def decode(sizes: np.ndarray, blob: bytes | memoryview, codec: str, shape: tuple[int, int, int, int],
           out: np.ndarray | None = None) -> np.ndarray:
    """The tiles back: (N, H, W, 3) for JPEG, ``shape`` itself for zstd.

    Args:
        sizes: the ``[quality, size_0, ...]`` part, checked to add up to ``blob``.
        blob: the encodings.
        codec: ``jpeg`` or ``zstd``.
        shape: (N, H, W, C) the tiles had.
        out: where to decode to (saves a copy), of the decoded shape.

    Raises:
        CodecError: sizes that do not fit, or a tile that does not decode to its shape.
    """
    count, height, width, channels = shape
    channels = 3 if codec == "jpeg" else channels
    if sizes.shape != (count + 1,) or (sizes[1:] < 1).any() or int(sizes[1:].sum()) != len(blob):
        raise CodecError(f"tile sizes {sizes[1:].tolist()[:4]}... do not add up to the {len(blob)}-byte payload")
    tiles = np.empty((count, height, width, channels), np.uint8) if out is None else out
    ends = np.cumsum(sizes[1:]).tolist()
    view = memoryview(blob)

    def one(index: int, start: int, end: int) -> None:
        piece = view[start:end]
        try:
            if codec == "jpeg":
                if simplejpeg.decode_jpeg_header(piece)[:2] != (height, width):
                    raise CodecError(f"tile {index} is not {height}x{width}")
                simplejpeg.decode_jpeg(piece, colorspace="RGB", buffer=tiles[index])
            else:
                data = zstandard.ZstdDecompressor().decompress(piece, max_output_size=tiles[index].nbytes)
                if len(data) != tiles[index].nbytes:
                    raise CodecError(f"tile {index} decodes to {len(data)} bytes, not {tiles[index].nbytes}")
                tiles[index] = np.frombuffer(data, np.uint8).reshape(tiles[index].shape)
        except CodecError:
            raise
        except Exception as exc:  # each library raises its own types for corrupt data
            raise CodecError(f"tile {index} does not decode as {codec}: {exc}") from None

    list(_pool().map(one, range(count), [0, *ends[:-1]], ends))  # list(): the first error is raised here
    return tiles


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """Threads that code tiles in parallel: libjpeg-turbo and zstd run without the GIL."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="vrstyle-codec")
