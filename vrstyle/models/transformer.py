"""Johnson et al. feed-forward style network (TransformerNet), width and depth configurable.

Johnson, Alahi, Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution", ECCV 2016; layer names follow pytorch/examples ``fast_neural_style`` so
the teachers in ``shared/data/teachers/johnson`` load with ``strict=True``.

Every normalisation is a :class:`~vrstyle.models.norm.FrameNorm`, so the network runs with
its own per-image statistics (as trained), or, given a :class:`~vrstyle.models.norm.NormContext`,
normalises tiles with a frame's statistics (seam-free tiling) while measuring the moments of
their cores at full resolution for the next frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vrstyle.models.borders import Level, reflect_at_borders
from vrstyle.models.norm import PLAIN, FrameNorm, NormContext

STRIDE = 4
"""Total downsampling: tile offsets must be multiples of this for tiled == whole output."""
LEVELS = {"conv3": Level(2, 2), "deconv1": Level(2, STRIDE), "deconv2": Level(1, STRIDE)}
"""Where the (upsampled) inputs of the layers away from full resolution on the way down sit."""


_FOLD = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
"""(phase, tap, kernel row): which rows of a 3x3 kernel fall on each of an output phase's two low-resolution taps."""


def upsample_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Nearest x2 upsampling, reflection padding of 1, then a 3x3 convolution, without the x2 input.

    After nearest upsampling, the output pixels of one phase (row parity ``a``, column parity
    ``b``) each see only a 2x2 block of the low-resolution input: phase 0 reads rows ``i - 1,
    i`` with kernel rows 0 and 1 + 2, phase 1 rows ``i, i + 1`` with 0 + 1 and 2 (the
    sub-pixel form of resize-convolution). So the four phases are one 2x2 convolution of the
    low-resolution input with 4x the output channels, interleaved; and reflecting the
    upsampled input by one pixel is repeating the low-resolution edge. The same result as
    the upsample-pad-convolve sequence (up to float rounding), in 4 instead of 9
    multiply-adds per output pixel and channel pair, and without the full-resolution upsampled and
    padded inputs (the peak of a whole-image pass: two 4x tensors at the widest layer).

    Args:
        x: (N, C_in, H, W) low-resolution input.
        weight: (C_out, C_in, 3, 3) kernel.
        bias: (C_out,) or None.

    Returns:
        (N, C_out, 2H, 2W).

    Raises:
        ValueError: a kernel that is not 3x3 over ``x``'s channels.

    >>> x, w, b = torch.randn(1, 4, 5, 6), torch.randn(2, 4, 3, 3), torch.randn(2)
    >>> plain = F.conv2d(F.pad(F.interpolate(x, scale_factor=2), (1, 1, 1, 1), mode="reflect"), w, b)
    >>> bool(torch.allclose(upsample_conv3x3(x, w, b), plain, atol=1e-5))
    True
    """
    n, channels, height, width = x.shape
    if weight.shape[1:] != (channels, 3, 3):
        raise ValueError(f"upsample_conv3x3 needs a (C_out, {channels}, 3, 3) kernel, got {tuple(weight.shape)}")
    out_ch = weight.shape[0]
    fold = _FOLD.to(weight.device)
    phases = torch.einsum("atk,bsl,oikl->aboits", fold, fold, weight.float()).reshape(4 * out_ch, channels, 2, 2)
    y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), phases.to(x.dtype),
                 None if bias is None else bias.to(x.dtype).repeat(4))
    out = y.new_empty(n, out_ch, height, 2, width, 2)
    for a in range(2):
        for b in range(2):
            first = (2 * a + b) * out_ch
            out[:, :, :, a, :, b] = y[:, first:first + out_ch, a:a + height, b:b + width]
    return out.view(n, out_ch, 2 * height, 2 * width)


def linear_weight(conv: nn.Module) -> torch.Tensor | None:
    """The float kernel ``conv`` applies to its input as given, or None when it transforms the
    input first (binary activations): what :func:`upsample_conv3x3` can fold."""
    if type(conv) is nn.Conv2d:
        return conv.weight
    weight = getattr(conv, "linear_weight", None)
    return weight() if weight is not None else None


class ConvLayer(nn.Module):
    """Reflection padding ``k // 2`` then a convolution (optionally after nearest x2 upsampling).

    ``level`` says where its (upsampled) input sits in the network, so that tiles reflect at
    the image's borders as the whole image does (:mod:`vrstyle.models.borders`). A 3x3
    upsampling layer whose convolution is linear in its input runs as
    :func:`upsample_conv3x3`, at the low resolution.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, upsample: bool = False,
                 conv: type[nn.Conv2d] = nn.Conv2d, level: Level = Level()):
        super().__init__()
        self.upsample, self.level = upsample, level
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = conv(in_ch, out_ch, kernel, stride)

    @property
    def folds_upsampling(self) -> bool:
        """Whether this layer runs as :func:`upsample_conv3x3` (2x2 taps at the low resolution)."""
        return self._folded_weight() is not None

    def _folded_weight(self) -> torch.Tensor | None:
        return linear_weight(self.conv2d) if self.upsample and self.conv2d.kernel_size == (3, 3) else None

    def forward(self, x: torch.Tensor, norm: NormContext = PLAIN) -> torch.Tensor:
        weight = self._folded_weight()  # once: a quantised kernel is quantised on each call
        if weight is not None:
            if norm.bounds is not None:  # one reflected row at 2x is the low-resolution edge row
                low = Level(2 * self.level.scale, self.level.quantum)
                x = reflect_at_borders(x, low.map(norm.bounds), 1, symmetric=True)
            return upsample_conv3x3(x, weight, self.conv2d.bias)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        if norm.bounds is not None:
            x = reflect_at_borders(x, self.level.map(norm.bounds), self.pad.padding[0])
        return self.conv2d(self.pad(x))


class ResidualBlock(nn.Module):
    """conv-norm-ReLU-conv-norm plus the identity (the full-precision shortcut)."""

    def __init__(self, channels: int, offset: int, stride: int, conv: type[nn.Conv2d] = nn.Conv2d):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, conv=conv, level=Level(stride, stride))
        self.in1 = FrameNorm(channels, offset, stride)
        self.conv2 = ConvLayer(channels, channels, 3, conv=conv, level=Level(stride, stride))
        self.in2 = FrameNorm(channels, offset + channels, stride)

    def forward(self, x: torch.Tensor, norm: NormContext = PLAIN) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(x, norm), norm))
        return x + self.in2(self.conv2(y, norm), norm)


class TransformerNet(nn.Module):
    """The Johnson style network; ``width=32, blocks=5`` is the standard (teacher) size.

    Args:
        width: channels of the first layer; the body has ``4 * width``.
        blocks: number of residual blocks.

    Shape:
        input (N, 3, H, W) RGB in 0..255; output (N, 3, H', W') unclamped, with ``H' = H``
        when ``H`` is a multiple of :data:`STRIDE` (else rounded up).

    >>> net = TransformerNet(width=8, blocks=1)
    >>> net(torch.rand(1, 3, 32, 48) * 255).shape
    torch.Size([1, 3, 32, 48])
    >>> net.stats_channels
    144
    """

    def __init__(self, width: int = 32, blocks: int = 5):
        super().__init__()
        if width < 1 or blocks < 0:
            raise ValueError(f"width must be >= 1 and blocks >= 0, got width={width} blocks={blocks}")
        self.width, self.blocks = width, blocks
        w1, w2, w4 = width, 2 * width, 4 * width
        offsets = iter(_running_offsets([w1, w2, w4] + [w4, w4] * blocks + [w2, w1]))
        self.conv1 = ConvLayer(3, w1, 9)
        self.in1 = FrameNorm(w1, next(offsets), stride=1)
        self.conv2 = ConvLayer(w1, w2, 3, stride=2)
        self.in2 = FrameNorm(w2, next(offsets), stride=2)
        self.conv3 = ConvLayer(w2, w4, 3, stride=2, level=LEVELS["conv3"])
        self.in3 = FrameNorm(w4, next(offsets), stride=4)
        for i in range(1, blocks + 1):
            offset = next(offsets)
            next(offsets)
            setattr(self, f"res{i}", ResidualBlock(w4, offset, stride=4))
        self.deconv1 = ConvLayer(w4, w2, 3, upsample=True, level=LEVELS["deconv1"])
        self.in4 = FrameNorm(w2, next(offsets), stride=2, quantum=STRIDE)
        self.deconv2 = ConvLayer(w2, w1, 3, upsample=True, level=LEVELS["deconv2"])
        self.in5 = FrameNorm(w1, next(offsets), stride=1, quantum=STRIDE)
        self.deconv3 = ConvLayer(w1, 3, 9, level=LEVELS["deconv2"])
        self.stats_channels = sum(m.channels for m in self.modules() if isinstance(m, FrameNorm))

    def residual_blocks(self) -> list[ResidualBlock]:
        return [getattr(self, f"res{i}") for i in range(1, self.blocks + 1)]

    def forward(self, x: torch.Tensor, norm: NormContext = PLAIN) -> torch.Tensor:
        """Stylise ``x``, its norm layers' statistics from ``norm`` (default: per image, as trained)."""
        y = F.relu(self.in1(self.conv1(x, norm), norm), inplace=True)
        y = F.relu(self.in2(self.conv2(y, norm), norm), inplace=True)
        y = F.relu(self.in3(self.conv3(y, norm), norm), inplace=True)
        for block in self.residual_blocks():
            y = block(y, norm)
        y = F.relu(self.in4(self.deconv1(y, norm), norm), inplace=True)
        y = F.relu(self.in5(self.deconv2(y, norm), norm), inplace=True)
        return self.deconv3(y, norm)


def _running_offsets(channels: list[int]) -> list[int]:
    offsets, total = [], 0
    for c in channels:
        offsets.append(total)
        total += c
    return offsets
