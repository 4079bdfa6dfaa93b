"""Binary and low-bit layers: quantizers with straight-through gradients, binary convolution.

Each quantizer is a functional form plus a small module, written after larq's quantizers:
the docstring gives the forward and the gradient the straight-through estimator (STE) uses.

References:
    * XNOR-Net: Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net: ImageNet Classification Using
      Binary Convolutional Neural Networks", ECCV 2016 (sign weights times a per-channel scale).
    * Bi-Real Net: Liu, Wu, Luo, Yang, Liu, Cheng, "Bi-Real Net: Enhancing the Performance of
      1-bit CNNs", ECCV 2018 (ApproxSign gradient, real shortcuts around each binary conv).
    * ReActNet: Liu, Shen, Savvides, Cheng, "ReActNet: Towards Precise Binary Neural Network
      with Generalized Activation Functions", ECCV 2020 (RSign learnable thresholds, RPReLU).
    * ABC-Net: Lin, Zhao, Pan, "Towards Accurate Binary Convolutional Neural Network",
      NeurIPS 2017 (activations as a sum of several binary planes, weights as a sum of several
      binary bases).
    * larq, "Quantizers" (docs.larq.dev/larq/api/quantizers): docstring conventions.

A binary convolution of ``P`` activation planes is exact integer arithmetic: with ±1 values
coded as bits ``b = (v + 1) / 2``, ``x·w = 4·popc(bx & bw) − 2·popc(bx) − 2·popc(bw) + K``
(:mod:`vrstyle.kernels` runs it on packed bits). In evaluation mode :class:`BinaryConv2d`
computes exactly the float form of that arithmetic, so the two agree bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BINARY_KINDS = ("binary", "binary_weights")
LAYER_KINDS = ("float", "int8") + BINARY_KINDS
"""How a convolution is stored and computed: fp weights, int8 weights, 1-bit weights with
1-bit activation planes (``binary``) or 1-bit weights on full-precision inputs."""
INT8_MAX = 127


def sign(x: torch.Tensor) -> torch.Tensor:
    """±1 with ``sign(0) = +1`` (so every value is one bit)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class _SteSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, approx: bool) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.approx = approx
        return sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        inside = x.abs() <= 1
        if ctx.approx:
            return grad * (2 - 2 * x.abs()) * inside, None
        return grad * inside, None


def ste_sign(x: torch.Tensor, approx: bool = False) -> torch.Tensor:
    r"""Sign with a clipped straight-through gradient.

    .. math::
        q(x) = \begin{cases} -1 & x < 0 \\ 1 & x \ge 0 \end{cases}
        \qquad
        \frac{\partial q}{\partial x} = \begin{cases} 1 & |x| \le 1 \\ 0 & |x| > 1 \end{cases}

    With ``approx=True`` the gradient is Bi-Real's ApproxSign, the derivative of a
    piecewise quadratic: :math:`\partial q / \partial x = 2 - 2|x|` for :math:`|x| \le 1`, else 0.

    >>> ste_sign(torch.tensor([-0.5, 0.0, 2.0]))
    tensor([-1.,  1.,  1.])
    """
    return _SteSign.apply(x, approx)


class _SteRound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad


def binarize_weights(weight: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    r"""XNOR-Net weight binarization: ``sign(W)`` times one scale per output channel.

    .. math::
        q(W)_o = \alpha_o \operatorname{sign}(W_o), \qquad
        \alpha_o = \operatorname{mean}|W_o| \text{ (or a learned } \alpha_o)
        \qquad
        \frac{\partial q}{\partial W} = \alpha_o \cdot 1_{|W| \le 1}
        \text{ (clipped STE; the mean's own gradient is kept)}

    Args:
        weight: (O, I, kh, kw) latent full-precision weights.
        scale: (O,) learned scales, or None for ``mean |W|``.

    Returns:
        (O, I, kh, kw) binarized weights, ±scale per output channel.
    """
    if scale is None:
        scale = weight.abs().mean(dim=(1, 2, 3))
    return ste_sign(weight) * scale[:, None, None, None]


def int8_scale(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 step, ``max |W| / 127`` (never 0)."""
    return (weight.detach().abs().amax(dim=(1, 2, 3)) / INT8_MAX).clamp_min(1e-12)


def quantize_int8(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r"""Symmetric per-output-channel int8 fake quantization with a stored step.

    .. math::
        q(W)_o = s_o \operatorname{clip}(\operatorname{round}(W_o / s_o), -127, 127)
        \qquad
        \frac{\partial q}{\partial W} = 1 \text{ (straight through)}

    The step :math:`s_o` is a parameter (learned as in LSQ: Esser et al., "Learned Step Size
    Quantization", ICLR 2020), so stored int8 values load back exactly.
    """
    step = scale[:, None, None, None]
    return _SteRound.apply(weight / step).clamp(-INT8_MAX, INT8_MAX) * step


class RSign(nn.Module):
    r"""ReActNet's RSign, generalised to ``planes`` binary planes (ABC-Net).

    Each channel ``c`` has ``planes`` learnable thresholds :math:`t_{c,k}` and one spread
    :math:`s_c`; plane ``k`` is a clipped-STE sign, and the planes are weighted by
    per-layer scalars :math:`\beta_k` (scalars, so a convolution of them stays popcount work):

    .. math::
        b_k = \operatorname{sign}\!\left(\frac{x_c - t_{c,k}}{s_c}\right), \qquad
        q(x) = \sum_k \beta_k b_k
        \qquad
        \frac{\partial b_k}{\partial x_c} = \frac{1}{s_c} 1_{|x_c - t_{c,k}| \le s_c}

    The spread only shapes the gradient window; the forward depends on the thresholds.

    Args:
        channels: input channels.
        planes: binary planes per activation (1: plain sign; 2 or 3: a thermometer code).
        approx: Bi-Real's ApproxSign gradient instead of the clipped identity.

    Shape:
        x (N, C, H, W) -> planes (P, N, C, H, W) of ±1.
    """

    def __init__(self, channels: int, planes: int = 1, approx: bool = False):
        super().__init__()
        if planes < 1:
            raise ValueError(f"activation planes must be >= 1, got {planes}")
        self.channels, self.planes, self.approx = channels, planes, approx
        self.threshold = nn.Parameter(torch.zeros(planes, channels))
        self.spread = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.ones(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spread = self.spread.abs().clamp_min(1e-3)[None, :, None, None]
        return torch.stack([ste_sign((x - t[None, :, None, None]) / spread, self.approx) for t in self.threshold])

    def extra_repr(self) -> str:
        return f"{self.channels}, planes={self.planes}, approx={self.approx}"


class RPReLU(nn.Module):
    r"""ReActNet's RPReLU: a PReLU with learnable shifts before and after, per channel.

    .. math:: f(x_c) = \operatorname{PReLU}(x_c - \gamma_c) + \zeta_c

    Initialised as a plain ReLU (slope 0, shifts 0), so a teacher's ReLU is reproduced.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.shift_in = nn.Parameter(torch.zeros(channels))
        self.slope = nn.Parameter(torch.zeros(channels))
        self.shift_out = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - self.shift_in[None, :, None, None].to(x.dtype)
        return F.prelu(x, self.slope.to(x.dtype)) + self.shift_out[None, :, None, None].to(x.dtype)


class BinaryConv2d(nn.Conv2d):
    r"""A convolution with 1-bit weights and, optionally, 1-bit activation planes.

    Weights are ``sign(W)`` times a per-output-channel scale (``mean |W|``, or learned with
    ``learned_scale``); with ``planes >= 1`` the input goes through :class:`RSign` first and
    the convolution is integer arithmetic on ±1 values (popcount work); with ``planes=0``
    only the weights are binary (additions and subtractions of full-precision inputs).
    Parameter names extend :class:`torch.nn.Conv2d`'s, so a teacher's weights load as the
    latent weights. Padding belongs to the caller: reflection padding of ±1 planes is ±1.

    With ``bases = B > 1`` (ABC-Net's weight bases) the convolution is ``B`` times wider, a
    binary convolution of ``B * out_channels`` outputs whose groups of ``B`` are summed:
    :math:`W_o \approx \sum_b \alpha_{b,o} \operatorname{sign}(W_{b,o})`, still one bit per
    weight and popcount work, base-major (rows ``b * out + o``). A float weight of
    ``out_channels`` rows (a teacher's) loads as residual bases: ``W_0 = W``, ``W_b`` the error
    left by the bases before it, the bias on base 0.

    Args:
        in_channels, out_channels, kernel_size, stride, bias: as :class:`torch.nn.Conv2d`.
        planes: activation planes (0: weights-only binary).
        learned_scale: learn the per-channel weight scale instead of ``mean |W|``.
        approx: Bi-Real ApproxSign gradient for the activations.

    Shape:
        (N, C_in, H, W) -> (N, C_out, H', W') as the float convolution.

    >>> conv = BinaryConv2d(8, 4, 3, planes=1).eval()
    >>> conv(torch.randn(2, 8, 5, 5)).shape
    torch.Size([2, 4, 3, 3])
    >>> BinaryConv2d(8, 4, 3, planes=1, bases=2).eval()(torch.randn(2, 8, 5, 5)).shape
    torch.Size([2, 4, 3, 3])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True,
                 planes: int = 1, learned_scale: bool = False, approx: bool = False, bases: int = 1):
        if bases < 1:
            raise ValueError(f"weight bases must be >= 1, got {bases}")
        super().__init__(in_channels, bases * out_channels, kernel_size, stride, bias=bias)
        self.planes, self.bases = planes, bases
        self.act = RSign(in_channels, planes, approx) if planes else None
        self.scale = nn.Parameter(torch.ones(bases * out_channels)) if learned_scale else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        weight, bias = state_dict.get(prefix + "weight"), state_dict.get(prefix + "bias")
        if self.bases > 1 and weight is not None and weight.shape[0] * self.bases == self.out_channels:
            state_dict[prefix + "weight"] = residual_bases(weight, self.bases)
            if bias is not None:
                state_dict[prefix + "bias"] = torch.cat([bias, bias.new_zeros((self.bases - 1) * len(bias))])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def weight_scale(self) -> torch.Tensor:
        """(O,) the scale each output channel's ±1 weights are multiplied by."""
        return self.scale if self.scale is not None else self.weight.abs().mean(dim=(1, 2, 3))

    def linear_weight(self) -> torch.Tensor | None:
        """The float weight this convolution applies to its input as given, or None when it
        binarises the input first (then it is not a linear map of it)."""
        return binarize_weights(self.weight, self.scale) if self.act is None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act is None:
            return F.conv2d(x, self.linear_weight().to(x.dtype), self.bias, self.stride)
        planes = self.act(x)
        count, batch = planes.shape[:2]
        # Integer-valued: ±1 inputs times ±1 weights, summed exactly in fp32 (|sum| < 2^24).
        acc = F.conv2d(planes.flatten(0, 1), ste_sign(self.weight).to(x.dtype), None, self.stride)
        acc = acc.unflatten(0, (count, batch))
        out = sum(self.act.beta[k].to(x.dtype) * acc[k] for k in range(count))
        out = out * self.weight_scale().to(x.dtype)[None, :, None, None]
        out = out if self.bias is None else out + self.bias.to(x.dtype)[None, :, None, None]
        return sum_bases(out, self.bases)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", planes={self.planes}, learned_scale={self.scale is not None}, " \
                                      f"bases={self.bases}"


def sum_bases(out: torch.Tensor, bases: int) -> torch.Tensor:
    """(N, B * C, H, W) base-major outputs -> (N, C, H, W), the bases added in order."""
    if bases == 1:
        return out
    parts = out.unflatten(1, (bases, -1))
    total = parts[:, 0]
    for b in range(1, bases):
        total = total + parts[:, b]
    return total


def residual_bases(weight: torch.Tensor, bases: int) -> torch.Tensor:
    """``bases`` latent weights whose scaled signs add up to ``weight`` ever more closely, stacked
    base-major: the first is ``weight``, each next one the error the bases before it leave.

    >>> w = torch.randn(4, 8, 3, 3)
    >>> stacked = residual_bases(w, 2)
    >>> approx = sum(b.abs().mean(dim=(1, 2, 3))[:, None, None, None] * sign(b) for b in stacked.chunk(2))
    >>> bool(((approx - w).norm() < (w.abs().mean(dim=(1, 2, 3))[:, None, None, None] * sign(w) - w).norm()))
    True
    """
    out, left = [], weight
    for _ in range(bases):
        out.append(left)
        left = left - left.abs().mean(dim=(1, 2, 3), keepdim=True) * sign(left)
    return torch.cat(out)


class Int8Conv2d(nn.Conv2d):
    """A convolution whose weights are fake-quantized to int8 per output channel (:func:`quantize_int8`).

    Call :meth:`reset_scale` after loading full-precision weights into it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale = nn.Parameter(int8_scale(self.weight))

    @torch.no_grad()
    def reset_scale(self) -> None:
        """Steps from the current weights: ``max |W| / 127`` per output channel."""
        self.scale.copy_(int8_scale(self.weight))

    def linear_weight(self) -> torch.Tensor:
        """The float weight this convolution applies: the int8 steps times their scale."""
        return quantize_int8(self.weight, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.linear_weight().to(x.dtype), self.bias, self.stride)


def conv_class(kind: str, planes: int = 1, learned_scale: bool = False, approx: bool = False, bases: int = 1):
    """A convolution constructor ``(in, out, kernel, stride)`` for a layer kind in :data:`LAYER_KINDS`
    (``bases`` weight bases for ``binary`` layers)."""
    if kind == "float":
        return nn.Conv2d
    if kind == "int8":
        return Int8Conv2d
    if kind in BINARY_KINDS:
        activation_planes = planes if kind == "binary" else 0

        def make(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> BinaryConv2d:
            return BinaryConv2d(in_channels, out_channels, kernel_size, stride, planes=activation_planes,
                                learned_scale=learned_scale, approx=approx, bases=bases if kind == "binary" else 1)

        return make
    raise ValueError(f"unknown layer kind {kind!r}; use one of {', '.join(LAYER_KINDS)}")
