"""The CPU fast path: binary students' 1-bit layers on compiled popcount kernels, and every
network's RGB tail on a compiled convolution.

:class:`PackedConvLayer` replaces a :class:`~vrstyle.models.transformer.ConvLayer` whose
convolution is a :class:`~vrstyle.models.binary.BinaryConv2d` with activation planes: the
input is binarised by the layer's own thresholds straight into packed bits, reflection
padding is done on the bits, and the convolution runs on AND + popcount
(:mod:`vrstyle.kernels.bconv`). The result is bit-identical to the float simulation the
network trains with (tested on every shipped student), so :func:`use_fast_kernels` is safe
to apply to any model before inference on a CPU. :class:`RGBTailConv` runs the 9x9
convolution to RGB at the end of every Johnson network (:mod:`vrstyle.kernels.rgbconv`, a
teacher's slowest layer in oneDNN) 3-4x faster, equal to PyTorch's up to float rounding
(:func:`use_compiled_tail`). :class:`~vrstyle.models.engine.StyleEngine` applies both unless
asked for the reference path.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vrstyle.models.binary import BinaryConv2d, sign, sum_bases
from vrstyle.models.borders import reflect_at_borders
from vrstyle.models.norm import PLAIN, NormContext
from vrstyle.models.transformer import ConvLayer


def _kernels():
    """:mod:`vrstyle.kernels.bconv`, imported at first use: loading numba costs about 50 MB and
    most of a second, which the reference path never needs."""
    from vrstyle.kernels import bconv

    return bconv


class PackedConvLayer(nn.Module):
    """Inference twin of a binary-activation :class:`ConvLayer` (padding, then the binary conv). CPU only."""

    def __init__(self, layer: ConvLayer):
        super().__init__()
        bconv = _kernels()
        conv = layer.conv2d
        if not isinstance(conv, BinaryConv2d) or conv.act is None:
            raise ValueError("only convolutions with binary activations run on the popcount kernels")
        self.upsample, self.pad, self.level = layer.upsample, layer.pad.padding[0], layer.level
        self.stride, self.planes, self.bases = conv.stride[0], conv.planes, conv.bases
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels  # all bases
        self.kh, self.kw = conv.kernel_size
        self.count = conv.in_channels * self.kh * self.kw
        with torch.no_grad():
            weight = conv.weight.detach().float().cpu()
            self.kernels, self.ones_w = bconv.pack_kernels(sign(weight).numpy())
            act = conv.act
            self.thresholds = _array(act.threshold)
            self.spread = _array(act.spread.abs().clamp_min(1e-3))  # as RSign.forward
            self.beta = _array(act.beta)
            self.scale = _array(conv.weight_scale())
            self.bias = _array(conv.bias) if conv.bias is not None else np.zeros(conv.out_channels, np.float32)

    def forward(self, x: torch.Tensor, norm: NormContext = PLAIN) -> torch.Tensor:
        if x.device.type != "cpu":
            raise RuntimeError("the popcount kernels run on the CPU; use the reference path on other devices")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        if norm.bounds is not None:  # binarising is per element: reflecting before it is reflecting the bits
            x = reflect_at_borders(x, self.level.map(norm.bounds), self.pad)
        n, _, h, w = x.shape
        if min(h, w) <= self.pad:
            raise ValueError(f"input of {h}x{w} px is too small for reflection padding of {self.pad}")
        pixels = x.detach().float().contiguous().numpy()
        bconv = _kernels()
        words = -(-self.in_channels // bconv.WORD_BITS)
        bits = np.empty((self.planes, n, h + 2 * self.pad, w + 2 * self.pad, words), np.uint64)
        bconv.pack_planes(pixels, self.thresholds, self.spread, self.pad, bits)
        ho, wo = (h + 2 * self.pad - self.kh) // self.stride + 1, (w + 2 * self.pad - self.kw) // self.stride + 1
        out = np.empty((n, self.out_channels, ho, wo), np.float32)
        bconv.binary_conv(bits, self.kernels, self.kh, self.kw, self.ones_w, self.count, self.stride, self.beta, self.scale, self.bias,
                          out)
        return sum_bases(torch.from_numpy(out), self.bases).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, stride={self.stride}, planes={self.planes}, "
                f"kernel_path={_kernels().kernel_path()}")


class RGBTailConv(nn.Module):
    """Inference twin of the convolution of a float 9x9 :class:`ConvLayer` to 3 channels (a
    network's last layer): the layer keeps its own padding, this runs on what it pads. CPU only."""

    def __init__(self, layer: ConvLayer):
        super().__init__()
        if not is_rgb_tail(layer):
            raise ValueError("only a float, stride-1 9x9 convolution to 3 channels runs on the RGB tail kernel")
        self.weight = _array(layer.conv2d.weight)
        bias = layer.conv2d.bias
        self.bias = _array(bias) if bias is not None else np.zeros(3, np.float32)
        from vrstyle.kernels.rgbconv import rgb_conv9  # numba, as _kernels

        self.convolve = rgb_conv9

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32:
            raise RuntimeError("the RGB tail kernel runs in float32 on the CPU; use the reference path otherwise")
        return torch.from_numpy(self.convolve(x.detach().contiguous().numpy(), self.weight, self.bias))


def is_rgb_tail(layer: nn.Module) -> bool:
    """Whether ``layer`` is a :class:`ConvLayer` whose convolution :class:`RGBTailConv` can run."""
    if not isinstance(layer, ConvLayer) or type(layer.conv2d) is not nn.Conv2d or layer.upsample:
        return False
    conv = layer.conv2d
    return (conv.out_channels, conv.kernel_size, conv.stride, conv.dilation, conv.groups, conv.padding) == (
        3, (9, 9), (1, 1), (1, 1), 1, (0, 0))


def _array(value: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(value.detach().float().cpu().numpy())


def has_binary_activations(model: nn.Module) -> bool:
    return any(isinstance(m, BinaryConv2d) and m.act is not None for m in model.modules())


def use_fast_kernels(model: nn.Module) -> nn.Module:
    """Swap every binary-activation :class:`ConvLayer` of ``model`` for its packed twin (in place).

    Returns:
        ``model`` in eval mode, computing bit for bit what it computed before, on the CPU.
    """
    model.eval()
    swapped = False
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ConvLayer) and isinstance(child.conv2d, BinaryConv2d) and child.conv2d.act is not None:
                setattr(module, name, PackedConvLayer(child))
                swapped = True
    if swapped:
        _kernels().set_threads(torch.get_num_threads())
    return model


def use_compiled_tail(model: nn.Module) -> nn.Module:
    """Swap the convolution of every RGB tail of ``model`` (:func:`is_rgb_tail`) for :class:`RGBTailConv` (in place).

    Returns:
        ``model`` in eval mode, computing what it computed before up to float rounding, on the CPU.
    """
    model.eval()
    tails = [layer for layer in model.modules() if is_rgb_tail(layer)]
    for layer in tails:
        layer.conv2d = RGBTailConv(layer)
    if tails:
        _kernels().set_threads(torch.get_num_threads())
    return model
