"""Student networks: the teacher's topology with each layer group stored at its own precision.

The head (``conv1``) and tail (``deconv3``) stay full precision; the down/up convolutions
(``conv2``, ``conv3``, ``deconv1``, ``deconv2``) and the residual body can each be
``float``, ``int8``, ``binary_weights`` (1-bit weights, full-precision inputs) or ``binary``
(1-bit weights and 1-bit activation planes, popcount arithmetic). The residual path stays
full precision. Layer names are the teacher's, so a student starts from its teacher.

The default is the shipped design, which fits the teacher's 1.68 M parameters in <= 300 KB:
binary body (1-bit weights and activations), 1-bit weights in ``conv3``/``deconv1`` (their
inputs stay full precision: binarizing those activations cost most of the quality), int8
``conv2``/``deconv2``, fp16 head and tail.
"""

from __future__ import annotations

import torch
from torch import nn

from vrstyle.models.binary import LAYER_KINDS, RPReLU, conv_class
from vrstyle.models.norm import PLAIN, NormContext
from vrstyle.models.transformer import LEVELS, ConvLayer, ResidualBlock, TransformerNet

SHIPPED_LAYERS = {"conv2": "int8", "conv3": "binary_weights", "body": "binary",
                  "deconv1": "binary_weights", "deconv2": "int8"}
"""Layer kinds of the shipped binary students."""
FLOAT_LAYERS = dict.fromkeys(SHIPPED_LAYERS, "float")
GROUPS = tuple(SHIPPED_LAYERS)


class StudentBlock(ResidualBlock):
    """A residual block with optional RPReLU and Bi-Real shortcuts around each convolution.

    Bi-Real: ``h = act(in1(conv1(x))) + x; out = h + in2(conv2(h))`` (each binary
    convolution gets its own real-valued shortcut). Gated: ``y = act(in1(conv1(x)));
    h = y + a * x; out = x + in2(conv2(h)) + b * y`` with per-channel gates ``a``, ``b``
    starting at 0, so the block starts as the teacher's (whose weights it is initialised from)
    and becomes Bi-Real at ``a = b = 1``. Otherwise the teacher's block.
    """

    def __init__(self, channels: int, offset: int, stride: int, conv, rprelu: bool = False, bireal: bool = False,
                 gated: bool = False):
        super().__init__(channels, offset, stride, conv=conv)
        if bireal and gated:
            raise ValueError("a block has Bi-Real shortcuts or gated ones, not both")
        self.bireal = bireal
        self.gates = nn.Parameter(torch.zeros(2, 1, channels, 1, 1)) if gated else None
        self.act = RPReLU(channels) if rprelu else nn.ReLU()

    def forward(self, x: torch.Tensor, norm: NormContext = PLAIN) -> torch.Tensor:
        y = self.act(self.in1(self.conv1(x, norm), norm))
        if self.bireal:
            y = y + x
            return y + self.in2(self.conv2(y, norm), norm)
        if self.gates is not None:
            into, around = self.gates
            return x + self.in2(self.conv2(y + into * x, norm), norm) + around * y
        return x + self.in2(self.conv2(y, norm), norm)


class StudentNet(TransformerNet):
    """A :class:`TransformerNet` whose layer groups are float, int8 or binary.

    Args:
        width, blocks: as :class:`TransformerNet`.
        layers: kind per group (``conv2``, ``conv3``, ``body``, ``deconv1``, ``deconv2``);
            missing groups are ``float``. Default: :data:`SHIPPED_LAYERS`.
        planes: binary activation planes of ``binary`` layers (1 = plain sign).
        learned_scale: learn binary weight scales instead of ``mean |W|``.
        rprelu: RPReLU instead of ReLU inside residual blocks.
        bireal: Bi-Real shortcuts around each body convolution.
        gated: the same shortcuts behind per-channel gates that start at 0 (the teacher's block).
        approx: Bi-Real ApproxSign gradient for activations.
        weight_bases: binary weight bases of each body convolution (ABC-Net; 2: a binary
            convolution twice as wide whose pairs are summed, initialised from the teacher's
            weight and the error its signs leave).

    >>> net = StudentNet(width=8, blocks=1)
    >>> net(torch.rand(1, 3, 32, 32) * 255).shape
    torch.Size([1, 3, 32, 32])
    >>> net.res1.conv1.conv2d.planes, net.conv3.conv2d.planes
    (1, 0)
    """

    def __init__(self, width: int = 32, blocks: int = 5, layers: dict[str, str] | None = None, planes: int = 1,
                 learned_scale: bool = False, rprelu: bool = False, bireal: bool = False, approx: bool = False,
                 gated: bool = False, weight_bases: int = 1):
        layers = dict(SHIPPED_LAYERS if layers is None else {**FLOAT_LAYERS, **layers})
        unknown = set(layers) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown layer groups {sorted(unknown)}; groups are {', '.join(GROUPS)}")
        for group, kind in layers.items():
            if kind not in LAYER_KINDS:
                raise ValueError(f"layer group {group}: unknown kind {kind!r}; use one of {', '.join(LAYER_KINDS)}")
        if planes < 1:
            raise ValueError(f"activation planes must be >= 1, got {planes}")
        if weight_bases < 1:
            raise ValueError(f"weight bases must be >= 1, got {weight_bases}")
        super().__init__(width, blocks)
        self.layers, self.planes = layers, planes

        def make(kind: str, bases: int = 1):
            return conv_class(kind, planes, learned_scale, approx, bases)

        w1, w2, w4 = width, 2 * width, 4 * width
        self.conv2 = ConvLayer(w1, w2, 3, stride=2, conv=make(layers["conv2"]))
        self.conv3 = ConvLayer(w2, w4, 3, stride=2, conv=make(layers["conv3"]), level=LEVELS["conv3"])
        for i, block in enumerate(self.residual_blocks(), start=1):
            setattr(self, f"res{i}", StudentBlock(w4, block.in1.offset, block.in1.stride,
                                                  make(layers["body"], weight_bases), rprelu, bireal, gated))
        self.deconv1 = ConvLayer(w4, w2, 3, upsample=True, conv=make(layers["deconv1"]), level=LEVELS["deconv1"])
        self.deconv2 = ConvLayer(w2, w1, 3, upsample=True, conv=make(layers["deconv2"]), level=LEVELS["deconv2"])

