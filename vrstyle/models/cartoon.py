"""White-box Cartoonization generator (Wang & Yu, CVPR 2020), its guided filter, and pruning.

The teacher (``cartoon/teacher``, ``teachers/cartoon/whitebox.pth`` in the shared data) is
the authors' generator followed by their refinement: a guided filter (radius 1, eps 5e-3) with
the photo as guide, then a clamp. A student is the same generator, narrower and shallower,
trained on the *refined* outputs so that it learns the filter's colour fix and runs without
it (the Fast CartoonGAN idea). Its authors ask for non-commercial use of the teacher; every
network distilled from it carries that request.

Layer names are the teacher's (TensorFlow's ``Conv``, ``Conv_1`` ... ``Conv_9``, ``block_i``),
so a student starts from a slice of the teacher (:func:`pruned_state`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vrstyle.models.norm import PLAIN, NormContext

MULTIPLE = 8
"""Height and width must be multiples of this inside the generator (three halvings); inputs are
padded up to it by reflection and the output cropped back."""
SLOPE = 0.2
"""Leaky ReLU slope of the generator."""
GUIDED_RADIUS, GUIDED_EPS = 1, 5e-3
"""The authors' refinement of the generator's output."""


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over each pixel's ``(2r+1)^2`` window, counting only pixels inside the image."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int = GUIDED_RADIUS,
                  eps: float = GUIDED_EPS) -> torch.Tensor:
    """He et al.'s guided filter, channel by channel: ``src`` smoothed where ``guide`` is flat.

    Within each window, ``src ~ a * guide + b`` by least squares (``eps`` penalises ``a``);
    the output averages the windows' ``a`` and ``b`` at every pixel, so edges of the guide
    survive and noise of ``src`` does not.

    Args:
        guide: (N, C, H, W) the image whose edges to keep (here the photo, in -1..1).
        src: (N, C, H, W) the image to filter (the generator's output).
        radius: window radius in pixels.
        eps: regulariser; larger smooths more.

    Returns:
        (N, C, H, W) the filtered ``src``.

    Raises:
        ValueError: the shapes differ.

    >>> x = torch.rand(1, 3, 8, 8)
    >>> torch.allclose(guided_filter(x, x, eps=1e-8), x, atol=1e-3)
    True
    """
    if guide.shape != src.shape:
        raise ValueError(f"guide {tuple(guide.shape)} and source {tuple(src.shape)} differ in shape")
    mean_g, mean_s = box_mean(guide, radius), box_mean(src, radius)
    cov = box_mean(guide * src, radius) - mean_g * mean_s
    var = box_mean(guide * guide, radius) - mean_g * mean_g
    a = cov / (var + eps)
    b = mean_s - a * mean_g
    return box_mean(a, radius) * guide + box_mean(b, radius)


class GuidedFilter(nn.Module):
    """Module form of :func:`guided_filter`."""

    def __init__(self, radius: int = GUIDED_RADIUS, eps: float = GUIDED_EPS):
        super().__init__()
        self.radius, self.eps = radius, eps

    def forward(self, guide: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        return guided_filter(guide, src, self.radius, self.eps)


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's 'SAME' zero padding (stride 2 pads bottom/right only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        rows, cols = (k - s if size % s == 0 else k - 1 for size in x.shape[-2:])
        return super().forward(F.pad(x, (cols // 2, cols - cols // 2, rows // 2, rows - rows // 2)))


class ResBlock(nn.Module):
    """``x + conv2(lrelu(conv1(x)))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = SameConv(channels, channels, 3)
        self.conv2 = SameConv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), SLOPE))


class CartoonNet(nn.Module):
    """The White-box Cartoonization generator; ``width=32, blocks=4`` is the teacher.

    Args:
        width: channels at full resolution (``2 * width`` at 1/2, ``4 * width`` at 1/4).
        blocks: residual blocks at 1/4 resolution.
        refine: apply the authors' guided filter and clamp (the teacher); a student learns it.

    Shape:
        input (N, 3, H, W) RGB in 0..255, any H and W; output (N, 3, H, W) in 0..255 (clamped
        only when ``refine``). Networks without normalisation take no statistics:
        ``stats_channels`` is 0 and ``norm`` is ignored.

    >>> net = CartoonNet(width=4, blocks=1)
    >>> net(torch.rand(1, 3, 20, 30) * 255).shape
    torch.Size([1, 3, 20, 30])
    """

    stats_channels = 0

    def __init__(self, width: int = 32, blocks: int = 4, refine: bool = False):
        super().__init__()
        if width < 1 or blocks < 0:
            raise ValueError(f"width must be >= 1 and blocks >= 0, got width={width} blocks={blocks}")
        self.width, self.blocks, self.refine = width, blocks, refine
        w1, w2, w4 = width, 2 * width, 4 * width
        for name, (cin, cout, k, s) in {
            "Conv": (3, w1, 7, 1), "Conv_1": (w1, w1, 3, 2), "Conv_2": (w1, w2, 3, 1),
            "Conv_3": (w2, w2, 3, 2), "Conv_4": (w2, w4, 3, 1), "Conv_5": (w4, w2, 3, 1),
            "Conv_6": (w2, w2, 3, 1), "Conv_7": (w2, w1, 3, 1), "Conv_8": (w1, w1, 3, 1),
            "Conv_9": (w1, 3, 7, 1),
        }.items():
            setattr(self, name, SameConv(cin, cout, k, s))
        for i in range(blocks):
            setattr(self, f"block_{i}", ResBlock(w4))

    def generator(self, x: torch.Tensor) -> torch.Tensor:
        """The network proper: -1..1 in and out, height and width multiples of :data:`MULTIPLE`."""
        act = lambda t: F.leaky_relu(t, SLOPE)  # noqa: E731
        x0 = act(self.Conv(x))
        x1 = act(self.Conv_2(act(self.Conv_1(x0))))
        x2 = act(self.Conv_4(act(self.Conv_3(x1))))
        for i in range(self.blocks):
            x2 = getattr(self, f"block_{i}")(x2)
        x2 = act(self.Conv_5(x2))
        x3 = F.interpolate(x2, scale_factor=2, mode="bilinear", align_corners=False) + x1
        x3 = act(self.Conv_7(act(self.Conv_6(x3))))
        x4 = F.interpolate(x3, scale_factor=2, mode="bilinear", align_corners=False) + x0
        return self.Conv_9(act(self.Conv_8(x4)))

    def forward(self, x: torch.Tensor, norm: NormContext = PLAIN) -> torch.Tensor:
        height, width = x.shape[-2:]
        photo = x / 127.5 - 1
        pad_h, pad_w = -height % MULTIPLE, -width % MULTIPLE
        padded = F.pad(photo, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else photo
        out = self.generator(padded)[..., :height, :width]
        if self.refine:
            out = guided_filter(photo, out).clamp(-1, 1)
        return (out + 1) * 127.5


STREAMS = {
    # layer: (input group, output group); a group's channels are sliced together wherever they meet
    "Conv": ("rgb", "x0"), "Conv_1": ("x0", "a1"), "Conv_2": ("a1", "x1"), "Conv_3": ("x1", "a2"),
    "Conv_4": ("a2", "x2"), "Conv_5": ("x2", "x1"), "Conv_6": ("x1", "a3"), "Conv_7": ("a3", "x0"),
    "Conv_8": ("x0", "a4"), "Conv_9": ("a4", "rgb"),
}
"""How the generator's tensors are shared: ``x0``, ``x1``, ``x2`` are summed by skips and the
residual stream, so every layer writing or reading one of them keeps the same channels."""


def _streams(blocks: int) -> dict[str, tuple[str, str]]:
    streams = dict(STREAMS)
    for i in range(blocks):
        streams[f"block_{i}.conv1"] = ("x2", f"b{i}")
        streams[f"block_{i}.conv2"] = (f"b{i}", "x2")
    return streams


def pruned_state(teacher: dict[str, torch.Tensor], student: CartoonNet) -> dict[str, torch.Tensor]:
    """A student's weights sliced from a wider, deeper generator's: its first blocks and, in
    every group of channels, those with the largest weights (L1 norm of the filters writing them,
    each layer's share normalised).

    Args:
        teacher: the wider generator's state dict (the teacher's layer names).
        student: the network to fill; its width must not exceed the teacher's, nor its blocks.

    Returns:
        a state dict that loads into ``student`` strictly.

    Raises:
        ValueError: the student is wider or deeper than the teacher.
    """
    teacher_width = teacher["Conv.weight"].shape[0]
    teacher_blocks = len({k.split(".")[0] for k in teacher if k.startswith("block_")})
    if student.width > teacher_width or student.blocks > teacher_blocks:
        raise ValueError(f"a student of width {student.width} and {student.blocks} blocks cannot be cut from "
                         f"a generator of width {teacher_width} and {teacher_blocks} blocks")
    streams = _streams(student.blocks)
    group_size = {group: student.get_submodule(layer).out_channels for layer, (_, group) in streams.items()}
    importance: dict[str, torch.Tensor] = {}
    for layer, (_, group) in streams.items():
        weight = teacher[f"{layer}.weight"].float().abs().sum(dim=(1, 2, 3))
        importance[group] = importance.get(group, 0) + weight / weight.sum()
    keep = {group: scores.argsort(descending=True)[:group_size[group]].sort().values
            for group, scores in importance.items()}
    keep["rgb"] = torch.arange(3)
    state = {}
    for layer, (group_in, group_out) in streams.items():
        weight = teacher[f"{layer}.weight"].float()
        state[f"{layer}.weight"] = weight[keep[group_out]][:, keep[group_in]].clone()
        state[f"{layer}.bias"] = teacher[f"{layer}.bias"].float()[keep[group_out]].clone()
    return state
