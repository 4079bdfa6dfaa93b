"""Instance normalisation whose statistics can come from outside the tile.

Per-tile InstanceNorm statistics differ between tiles, and that, not convolution, is what
makes tiled stylisation seamy. :class:`FrameNorm` normalises with statistics captured once
per frame from a thumbnail of the whole frame (both eyes together) and applied unchanged to
every tile: Thumbnail Instance Normalization, after Chen et al., "Towards Ultra-Resolution
Neural Style Transfer via Thumbnail Instance Normalization" (URST, AAAI 2022).

The statistics must be measured at full resolution: these networks are scale-sensitive, and
statistics from a downscaled thumbnail gave large artefacts (e.g. green blobs with udnie),
so they are taken over the cores of full-resolution tiles instead (``margin``).

A network's statistics travel as one plain tensor of shape ``(2, C)`` (mean row, variance
row; ``C`` the channels of all its norm layers in forward order), or ``(B, 2, C)`` to give
each image of a batch its own, so tiles of different frames can share a batch. Their
arithmetic (merging, smoothing) is in :mod:`vrstyle.normstats`, free of torch.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-5


class FrameNorm(nn.Module):
    """Affine instance normalisation with three sources of statistics.

    * ``stats`` given: normalise with those (a per-channel affine, fusable, no reductions);
    * ``capture`` given (and no ``stats``): take the statistics jointly over the whole batch
      (e.g. several tiles of one frame), normalise with them and record them;
    * neither: plain per-image InstanceNorm, as the network was trained.

    With both ``stats`` and ``capture``, the layer normalises with ``stats`` and records the
    moments of its input, so the tiles of one frame measure the statistics for the next. A
    capture of shape ``(N, 3, C_total)`` records each image's moments on its own (so they do
    not depend on what else shares the batch); a ``(3, C_total)`` one records them jointly.
    Recording skips ``margin`` input pixels on every side (scaled by this layer's ``stride``):
    the halo of a tile, where its own padding disturbs the activations. Recorded moments are
    rows (count, mean, variance); see :func:`combine_moments`.

    Shape:
        x: (N, C, H, W); stats: (2, C_total) or (N, 2, C_total); capture: (3, C_total) or (N, 3, C_total).
    """

    def __init__(self, channels: int, offset: int = 0, stride: int = 1, eps: float = EPS):
        super().__init__()
        self.channels, self.offset, self.stride, self.eps = channels, offset, stride, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, stats: torch.Tensor | None = None,
                capture: torch.Tensor | None = None, margin: int = 0) -> torch.Tensor:
        columns = slice(self.offset, self.offset + self.channels)
        if capture is not None:
            m = margin // self.stride
            inner = x[..., m:x.shape[-2] - m, m:x.shape[-1] - m].float()
            per_image = capture.ndim == 3
            var, mean = torch.var_mean(inner, dim=(2, 3) if per_image else (0, 2, 3), correction=0, keepdim=True)
            rows = capture.shape[:-2] + (self.channels,)
            capture[..., 0, columns] = inner.shape[2] * inner.shape[3] * (1 if per_image else inner.shape[0])
            capture[..., 1, columns] = mean.reshape(rows)
            capture[..., 2, columns] = var.reshape(rows)
        if stats is not None:
            mean, var = stats[..., 0, columns].float(), stats[..., 1, columns].float()
            mean, var = mean.reshape(-1, self.channels, 1, 1), var.reshape(-1, self.channels, 1, 1)
        elif capture is None:
            var, mean = torch.var_mean(x.float(), dim=(2, 3), correction=0, keepdim=True)
        # Folded into one per-channel affine in fp32: variances overflow fp16.
        scale = self.weight.float()[None, :, None, None] * torch.rsqrt(var + self.eps)
        shift = self.bias.float()[None, :, None, None] - mean * scale
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))  # one pass over x, not two

    def extra_repr(self) -> str:
        return f"{self.channels}, offset={self.offset}, stride={self.stride}, eps={self.eps}"
