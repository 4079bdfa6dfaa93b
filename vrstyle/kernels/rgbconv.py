"""The RGB tail of a style network (a 9x9 convolution to 3 channels at full resolution), compiled.

Every Johnson network ends in ``deconv3``: 32 channels to RGB through a 9x9 kernel at the
output's full resolution, a teacher's slowest layer on a CPU. oneDNN (PyTorch's CPU convolution)
runs it at about a fifth of the rate it reaches on the head ``conv1`` (3 to 32 channels, the
same kernel and multiply-adds: ``benchmarks/results/binary-kernels.md``). Here each output row
keeps its three channel sums along the row (in L1 cache), and each input row's nine taps,
loaded once, serve all three: the same multiply-adds, 3-4x faster than oneDNN (measured in
``benchmarks/binary_kernels.py``). The summation order is the same at every pixel, so tiles
still match the whole image bit for bit; against PyTorch's order it differs by float rounding.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

KERNEL, CHANNELS_OUT = 9, 3
"""The one shape compiled here: a 9x9 kernel to RGB."""


@njit(parallel=True, cache=True)
def _rgb_conv9(x, weight, bias, out):  # pragma: no cover - compiled
    batch, channels = x.shape[0], x.shape[1]
    height, width = out.shape[2], out.shape[3]
    for job in prange(batch * height):
        n, y = job // height, job % height
        red = np.zeros(width, np.float32)
        green = np.zeros(width, np.float32)
        blue = np.zeros(width, np.float32)
        for c in range(channels):
            for ky in range(KERNEL):
                r, w = x[n, c, y + ky], weight[:, c, ky]
                for i in range(width):
                    v0, v1, v2, v3, v4 = r[i], r[i + 1], r[i + 2], r[i + 3], r[i + 4]
                    v5, v6, v7, v8 = r[i + 5], r[i + 6], r[i + 7], r[i + 8]
                    red[i] += (w[0, 0] * v0 + w[0, 1] * v1 + w[0, 2] * v2 + w[0, 3] * v3 + w[0, 4] * v4
                               + w[0, 5] * v5 + w[0, 6] * v6 + w[0, 7] * v7 + w[0, 8] * v8)
                    green[i] += (w[1, 0] * v0 + w[1, 1] * v1 + w[1, 2] * v2 + w[1, 3] * v3 + w[1, 4] * v4
                                 + w[1, 5] * v5 + w[1, 6] * v6 + w[1, 7] * v7 + w[1, 8] * v8)
                    blue[i] += (w[2, 0] * v0 + w[2, 1] * v1 + w[2, 2] * v2 + w[2, 3] * v3 + w[2, 4] * v4
                                + w[2, 5] * v5 + w[2, 6] * v6 + w[2, 7] * v7 + w[2, 8] * v8)
        for i in range(width):
            out[n, 0, y, i] = red[i] + bias[0]
            out[n, 1, y, i] = green[i] + bias[1]
            out[n, 2, y, i] = blue[i] + bias[2]


def rgb_conv9(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """A valid (unpadded) 9x9 convolution to 3 channels, float32, rows in parallel.

    Args:
        x: (N, C, H, W) float32 input, already padded (``H, W >= 9``).
        weight: (3, C, 9, 9) float32 kernel.
        bias: (3,) float32.

    Returns:
        (N, 3, H - 8, W - 8) float32, as ``torch.nn.functional.conv2d`` up to float rounding.

    Raises:
        ValueError: arrays of another dtype or shape.

    >>> x = np.ones((1, 2, 10, 11), np.float32)
    >>> rgb_conv9(x, np.ones((3, 2, 9, 9), np.float32), np.arange(3, dtype=np.float32))[0, :, 0, 0].tolist()
    [162.0, 163.0, 164.0]
    """
    if x.dtype != np.float32 or weight.dtype != np.float32 or bias.dtype != np.float32:
        raise ValueError(f"rgb_conv9 takes float32 arrays, got {x.dtype}, {weight.dtype}, {bias.dtype}")
    if x.ndim != 4 or min(x.shape[2:]) < KERNEL:
        raise ValueError(f"rgb_conv9 expects (N, C, H, W) input with H, W >= {KERNEL}, got {x.shape}")
    if weight.shape != (CHANNELS_OUT, x.shape[1], KERNEL, KERNEL) or bias.shape != (CHANNELS_OUT,):
        raise ValueError(f"rgb_conv9 needs a ({CHANNELS_OUT}, {x.shape[1]}, {KERNEL}, {KERNEL}) kernel and "
                         f"({CHANNELS_OUT},) bias, got {weight.shape} and {bias.shape}")
    n, _, h, w = x.shape
    out = np.empty((n, CHANNELS_OUT, h - KERNEL + 1, w - KERNEL + 1), np.float32)
    _rgb_conv9(np.ascontiguousarray(x), np.ascontiguousarray(weight), bias, out)
    return out
