"""Bit-packed binary convolution: packing, and an exact CPU path on AND + popcount."""

from vrstyle.kernels.bits import PACKING, PackingError, pack_channels, pack_signs, packed_bytes, unpack_signs
from vrstyle.kernels.popcount import PackedBinaryConv2d, popcount_conv2d, use_popcount

__all__ = ["PACKING", "PackedBinaryConv2d", "PackingError", "pack_channels", "pack_signs", "packed_bytes",
           "popcount_conv2d", "unpack_signs", "use_popcount"]
