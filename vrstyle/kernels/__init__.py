"""Compiled CPU kernels: bit packing and the AND + popcount convolution, the RGB tail, stereo coverage.

Pure array code (numpy and numba): nothing here imports torch or the models, which wrap
these kernels in :mod:`vrstyle.models.fast`.
"""

from vrstyle.kernels.bits import PACKING, PackingError, pack_channels, pack_signs, packed_bytes, unpack_signs

__all__ = ["PACKING", "PackingError", "pack_channels", "pack_signs", "packed_bytes", "unpack_signs"]
