"""Binary convolution on packed bits with AND and popcount, on the CPU (numpy).

With ±1 values coded as bits ``b = (v + 1) / 2`` and ``K`` values per dot product:

    x·w = 4·popc(bx & bw) − 2·popc(bx) − 2·popc(bw) + K

Channels are packed 64 to a word (zero padding bits count in neither popcount, so ``K`` is
the true number of values); a 3x3 patch of 128 channels is 18 words. Reflection padding of
±1 planes is still ±1, so every patch has all ``K`` values and ``popc(bx)`` is one number
per patch. The AND form is the one GPUs run natively (Hopper emulates XOR popcount).

:class:`PackedBinaryConv2d` replaces a :class:`~vrstyle.models.binary.BinaryConv2d` for
inference and gives bit-identical outputs: the integer accumulators are exact in both, and
the float scaling after them is the same sequence of operations.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vrstyle.kernels.bits import pack_channels
from vrstyle.models.binary import BinaryConv2d

CHUNK_VALUES = 1 << 22
"""Largest (pixels x output channels x words) block popcounted at once: bounds memory."""


def popcount_conv2d(x_words: np.ndarray, w_words: np.ndarray, count: int, stride: int = 1) -> np.ndarray:
    """Integer convolution of packed ±1 maps with packed ±1 kernels (no padding: pad first).

    Args:
        x_words: (N, H, W, words) uint64 input planes packed along channels.
        w_words: (O, kh, kw, words) uint64 kernels in the same packing.
        count: real values per dot product, ``C * kh * kw``.
        stride: convolution stride.

    Returns:
        (N, O, H', W') int32 dot products of the ±1 values.
    """
    n, h, w, words = x_words.shape
    o, kh, kw, w_words_n = w_words.shape
    if words != w_words_n:
        raise ValueError(f"input packs {words} words per pixel, kernels {w_words_n}")
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    patches = np.stack([x_words[:, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
                        for ky in range(kh) for kx in range(kw)], axis=3).reshape(n * ho * wo, -1)
    kernels = w_words.reshape(o, -1)
    ones_w = np.bitwise_count(kernels).sum(axis=1, dtype=np.int32)
    ones_x = np.bitwise_count(patches).sum(axis=1, dtype=np.int32)
    both = np.empty((len(patches), o), np.int32)
    rows = max(1, CHUNK_VALUES // kernels.size)
    for start in range(0, len(patches), rows):
        block = patches[start:start + rows, None, :] & kernels[None]
        both[start:start + rows] = np.bitwise_count(block).sum(axis=2, dtype=np.int32)
    dots = 4 * both - 2 * ones_x[:, None] - 2 * ones_w[None, :] + count
    return dots.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)


class PackedBinaryConv2d(nn.Module):
    """Inference twin of a :class:`BinaryConv2d` with binary activations, on packed bits.

    The activation planes come from the same :class:`RSign` module, are packed 64 channels
    to a word and convolved with :func:`popcount_conv2d`; then the same scaling as the
    float simulation. CPU only.
    """

    def __init__(self, conv: BinaryConv2d):
        super().__init__()
        if conv.act is None:
            raise ValueError("only convolutions with binary activations run on popcount")
        self.act, self.stride = conv.act, conv.stride[0]
        self.kernel_size = conv.kernel_size
        self.count = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        with torch.no_grad():
            self.register_buffer("weight_scale", conv.weight_scale().detach().clone())
            self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
            self.w_words = pack_channels(conv.weight.detach().cpu().numpy() >= 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        planes = self.act(x)
        count, batch = planes.shape[:2]
        words = pack_channels(planes.flatten(0, 1).cpu().numpy() > 0)
        acc = torch.from_numpy(popcount_conv2d(words, self.w_words, self.count, self.stride)).to(x.dtype)
        acc = acc.unflatten(0, (count, batch))
        out = sum(self.act.beta[k].to(x.dtype) * acc[k] for k in range(count))
        out = out * self.weight_scale.to(x.dtype)[None, :, None, None]
        return out if self.bias is None else out + self.bias.to(x.dtype)[None, :, None, None]


def use_popcount(model: nn.Module) -> nn.Module:
    """Swap every binary-activation :class:`BinaryConv2d` of ``model`` for its packed twin (in place).

    Returns:
        ``model``, in eval mode, computing exactly what it computed before on the CPU.
    """
    model.eval()
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BinaryConv2d) and child.act is not None:
                setattr(module, child_name, PackedBinaryConv2d(child))
    return model
