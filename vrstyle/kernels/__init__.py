"""Bit-packed binary convolution: packing, and compiled AND + popcount kernels for CPUs.

Pure array code (numpy and numba): nothing here imports torch or the models, which wrap
these kernels in :mod:`vrstyle.models.fast`.
"""

from vrstyle.kernels.bits import PACKING, PackingError, pack_channels, pack_signs, packed_bytes, unpack_signs

__all__ = ["PACKING", "PackingError", "pack_channels", "pack_signs", "packed_bytes", "unpack_signs"]
