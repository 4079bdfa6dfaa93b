"""Layer-by-layer calibration of a student from its teacher, without gradient descent.

Training binary networks by gradient descent needs thousands of GPU steps; a CPU affords a
few dozen. Calibration gets most of the way in a few CPU minutes by walking the network one
layer at a time on a batch of photos, teacher and student side by side, and for each layer:

1. choosing the binary activation thresholds (a per-channel Lloyd-Max quantizer with
   :attr:`RSign.planes` uniform levels) from the statistics of the student's own input;
2. solving for the real weights that best map the student's (already quantized, already
   imperfect) inputs to the teacher's outputs of that layer (least squares, centred per
   image because an instance norm follows);
3. quantizing them column by column with error compensation (GPTQ: Frantar et al.,
   "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers",
   ICLR 2023), then for 1-bit weights refining the signs by coordinate descent on the same
   quadratic objective;
4. refitting the following norm's affine parameters so that its output (for the last norm of
   a residual block, the residual stream itself) matches the teacher's.

Each layer thus corrects the error the layers before it left, which local training against
the teacher's own inputs cannot. The tail convolution is refitted in full precision to the
teacher's output pixels, which is what PSNR measures.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vrstyle.models.binary import INT8_MAX, BinaryConv2d, Int8Conv2d, sign
from vrstyle.models.norm import FrameNorm
from vrstyle.models.students import StudentNet
from vrstyle.models.transformer import ConvLayer, TransformerNet
from vrstyle.progress import progress_bar
from vrstyle.train.losses import psnr

log = logging.getLogger(__name__)

POSITIONS = 24_000
"""Sampled output positions per layer for the least-squares statistics."""
DAMPING = 0.01
"""GPTQ's ridge term, as a fraction of the mean diagonal of the input covariance."""
SOLVE_DAMPING = 1e-5
"""Ridge term of the least-squares solve for real weights (same units)."""
SIGN_SWEEPS = 3
"""Coordinate-descent passes over the signs of 1-bit weights after GPTQ."""
LLOYD_ITERATIONS = 12
THRESHOLD_SAMPLES = 50_000
"""Activation samples per layer for fitting its thresholds."""


def fit_thresholds(samples: torch.Tensor, planes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel thresholds of a uniform ``planes + 1``-level quantizer (Lloyd-Max style).

    Levels are ``o + s * (2j - planes)`` for ``j = 0..planes``, thresholds halfway between;
    ``o`` and ``s`` are fitted per channel by alternating assignment and least squares.

    Args:
        samples: (C, M) activation samples per channel.
        planes: number of binary planes.

    Returns:
        thresholds (planes, C) ascending, and the half level spacing ``s`` (C,) (the STE window).
    """
    x = samples.double()
    offset = x.mean(dim=1, keepdim=True)
    spread = x.std(dim=1, keepdim=True).clamp_min(1e-6) / planes
    for _ in range(LLOYD_ITERATIONS):
        level = ((x - offset) / (2 * spread) + planes / 2).round().clamp(0, planes)
        code = 2 * level - planes  # -planes..planes in steps of 2
        code_mean = code.mean(dim=1, keepdim=True)
        cov = ((code - code_mean) * (x - x.mean(dim=1, keepdim=True))).mean(dim=1, keepdim=True)
        var = ((code - code_mean) ** 2).mean(dim=1, keepdim=True)
        spread = torch.where(var > 0, cov / var.clamp_min(1e-12), spread).clamp_min(1e-6)
        offset = x.mean(dim=1, keepdim=True) - spread * code_mean
    steps = torch.arange(planes, dtype=x.dtype) * 2 - planes + 1  # threshold codes between levels
    thresholds = offset.T + spread.T * steps[:, None]
    return thresholds.float(), spread.squeeze(1).float()


def fit_activation(conv: BinaryConv2d, inputs: torch.Tensor, generator: torch.Generator, beta: float = 1.0) -> None:
    """Set a binary convolution's thresholds (:func:`fit_thresholds`) from a sample of its own
    inputs (N, C, H, W), and weight every activation plane by ``beta``."""
    sample = inputs.transpose(0, 1).flatten(1).float()
    sample = sample[:, torch.randint(sample.shape[1], (min(sample.shape[1], THRESHOLD_SAMPLES),), generator=generator)]
    thresholds, spread = fit_thresholds(sample, conv.planes)
    conv.act.threshold.copy_(thresholds)
    conv.act.spread.copy_(spread)
    conv.act.beta.fill_(beta)


def gptq(weight: torch.Tensor, hessian: torch.Tensor, quantize: Callable[[torch.Tensor], torch.Tensor],
         damping: float = DAMPING) -> torch.Tensor:
    """Quantize the columns of ``weight`` in order, pushing each one's error onto the rest.

    Minimises ``tr((W - Q) H (W - Q)^T)`` greedily (GPTQ without blocking or reordering).

    Args:
        weight: (O, K) real weights.
        hessian: (K, K) input second moments ``X X^T``.
        quantize: maps a column (O,) to its quantized values.

    Returns:
        (O, K) quantized weights.
    """
    w = weight.double().clone()
    h = hessian.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damping * torch.diag(h).mean() * torch.eye(len(h), dtype=h.dtype)
    upper = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    for i in range(w.shape[1]):
        q[:, i] = quantize(w[:, i])
        error = (w[:, i] - q[:, i]) / upper[i, i]
        w[:, i:] -= error[:, None] * upper[i, i:][None, :]
    return q


def refine_signs(target: torch.Tensor, hessian: torch.Tensor, signs: torch.Tensor,
                 sweeps: int = SIGN_SWEEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinate descent on ``(a b - w) H (a b - w)^T`` per row over signs ``b`` and scale ``a``.

    Args:
        target: (O, K) real weights ``w`` the binary ones should act like.
        hessian: (K, K).
        signs: (O, K) starting ±1 signs (from GPTQ).

    Returns:
        signs (O, K) and per-row scales (O,).
    """
    h = hessian.double()
    b = signs.double().clone()
    g = target.double() @ h  # (O, K): H w per row
    hb = b @ h
    diag = torch.diag(h)

    def best_scale() -> torch.Tensor:
        return ((b * g).sum(1) / (b * hb).sum(1).clamp_min(1e-12)).clamp_min(1e-12)

    for _ in range(sweeps):
        a = best_scale()
        flips = 0
        for j in range(b.shape[1]):
            bj = b[:, j]
            gain = a * a * (-4 * bj * hb[:, j] + 4 * diag[j]) + 4 * a * bj * g[:, j]
            flip = gain < 0
            if flip.any():
                change = torch.where(flip, -2 * bj, torch.zeros_like(bj))
                b[:, j] += change
                hb += change[:, None] * h[j][None, :]
                flips += int(flip.sum())
        log.debug("sign sweep: %d flips", flips)
        if not flips:
            break
    return b.float(), best_scale().float()


class _Moments:
    """Accumulates ``X X^T`` and ``Y X^T`` over sampled positions, image by image."""

    def __init__(self):
        self.xx = self.yx = None
        self.yy = 0.0
        self.count = 0

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        xx, yx = (x @ x.T).double(), (y @ x.T).double()  # fp32 products (fast), fp64 totals
        self.xx = xx if self.xx is None else self.xx + xx
        self.yx = yx if self.yx is None else self.yx + yx
        self.yy += float(y.double().pow(2).sum())
        self.count += x.shape[1]

    def relative_error(self, w: torch.Tensor) -> float:
        """``|W X - Y|^2 / |Y|^2`` over the sampled positions."""
        w = w.double()
        error = (w @ self.xx * w).sum() - 2 * (w * self.yx).sum() + self.yy
        return float(error) / max(self.yy, 1e-12)


def _conv_input(layer: ConvLayer, a: torch.Tensor) -> torch.Tensor:
    if layer.upsample:
        a = F.interpolate(a, scale_factor=2, mode="nearest")
    return layer.pad(a)


def _binary_input(conv: BinaryConv2d, padded: torch.Tensor) -> torch.Tensor:
    """The float value a binary conv's activation planes stand for: ``sum_k beta_k b_k``."""
    planes = conv.act(padded)
    return sum(conv.act.beta[k] * planes[k] for k in range(len(planes)))


def fit_layer(name: str, student: ConvLayer, teacher: ConvLayer, a_s: torch.Tensor, a_t: torch.Tensor,
              centred: bool, positions: int, generator: torch.Generator,
              target: torch.Tensor | None = None) -> torch.Tensor:
    """Fit one student convolution to ``target`` (default: the teacher's output) given the
    student's own input.

    A full-precision layer whose input is still the teacher's keeps the teacher's weights.

    Returns:
        the teacher's pre-norm output ``u_t`` for the whole batch.
    """
    conv = student.conv2d
    p_s, p_t = _conv_input(student, a_s), _conv_input(teacher, a_t)
    u_t = teacher.conv2d(p_t)
    if target is None and type(conv) is nn.Conv2d and torch.equal(p_s, p_t):
        return u_t
    target = u_t if target is None else target
    if isinstance(conv, BinaryConv2d) and conv.act is not None:
        fit_activation(conv, p_s, generator)
        p_s = _binary_input(conv, p_s)
    kernel, stride = conv.kernel_size, conv.stride
    moments = _Moments()
    per_image = max(1, positions // len(p_s))
    for x_img, y_img in zip(p_s, target):
        cols = F.unfold(x_img[None], kernel, stride=stride)[0]  # (K, L)
        target = y_img.flatten(1)  # (O, L)
        if centred:
            cols = cols - cols.mean(dim=1, keepdim=True)
            target = target - target.mean(dim=1, keepdim=True)
        else:
            cols = torch.cat([cols, torch.ones_like(cols[:1])])
        pick = torch.randint(cols.shape[1], (min(per_image, cols.shape[1]),), generator=generator)
        moments.add(cols[:, pick], target[:, pick])
    h = moments.xx + SOLVE_DAMPING * torch.diag(moments.xx).mean() * torch.eye(len(moments.xx), dtype=moments.xx.dtype)
    w_real = torch.linalg.solve(h, moments.yx.T).T  # (O, K[+1])
    error_real = moments.relative_error(w_real)
    bias = None
    if not centred:
        w_real, bias = w_real[:, :-1], w_real[:, -1]
    w_q = _quantize(conv, w_real, moments.xx[:len(w_real.T), :len(w_real.T)])
    error = moments.relative_error(w_q.reshape(len(w_q), -1)) if centred else error_real
    log.info("%s: least-squares relative error %.4f with real weights, %.4f quantized", name, error_real, error)
    conv.weight.copy_(w_q.reshape(conv.weight.shape).to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.copy_(bias.float() if bias is not None else torch.zeros_like(conv.bias))
    return u_t


def _quantize(conv: nn.Conv2d, w_real: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    if isinstance(conv, BinaryConv2d):
        scale = w_real.abs().mean(dim=1, keepdim=True)
        q = gptq(w_real, hessian, lambda col: sign(col) * scale[:, 0])
        signs, scale = refine_signs(w_real, hessian, sign(q))
        if conv.scale is not None:
            conv.scale.copy_(scale)
        return signs.double() * scale.double()[:, None]  # latent weights: sign and mean |W| are the fit
    if isinstance(conv, Int8Conv2d):
        step = (w_real.abs().amax(dim=1) / INT8_MAX).clamp_min(1e-12)
        conv.scale.copy_(step)
        return gptq(w_real, hessian, lambda col: (col / step).round().clamp(-INT8_MAX, INT8_MAX) * step)
    return w_real


def fit_norm(norm: FrameNorm, u: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Set a norm's affine so that ``norm(u)`` (per-image statistics) best matches ``target``.

    Returns:
        ``norm(u)`` after the fit.
    """
    var, mean = torch.var_mean(u, dim=(2, 3), correction=0, keepdim=True)
    n = ((u - mean) * torch.rsqrt(var + norm.eps)).transpose(0, 1).flatten(1).double()
    t = target.transpose(0, 1).flatten(1).double()
    n_mean, t_mean = n.mean(1), t.mean(1)
    cov = ((n - n_mean[:, None]) * (t - t_mean[:, None])).mean(1)
    gain = cov / ((n - n_mean[:, None]) ** 2).mean(1).clamp_min(1e-12)
    norm.weight.copy_(gain.float())
    norm.bias.copy_((t_mean - gain * n_mean).float())
    return norm(u)


@torch.no_grad()
def calibrate(student: StudentNet, teacher: TransformerNet, images: torch.Tensor, positions: int = POSITIONS,
              seed: int = 0, progress: bool | None = None) -> dict[str, float]:
    """Calibrate ``student`` (the teacher's depth, its width or narrower) on a batch of photos.

    Args:
        student: a :class:`StudentNet`; its weights are overwritten.
        teacher: the full-precision network.
        images: (N, 3, H, W) RGB 0..255, H and W multiples of 4.
        positions: sampled positions per layer for the least-squares statistics.
        seed: sampling seed.
        progress: show a progress bar (None: only on a terminal).

    Returns:
        ``{"psnr_calibration_set": dB}``: the calibrated student against the teacher on ``images``.
    """
    if student.blocks != teacher.blocks or student.width > teacher.width:
        raise ValueError("calibration needs a student with the teacher's depth and at most its width")
    if any(getattr(block, "bireal", False) for block in student.residual_blocks()):
        raise ValueError("calibration does not support Bi-Real shortcuts; train those by distillation")
    keep = select_channels(teacher, student.width)
    if student.width == teacher.width:
        student.load_state_dict(teacher.state_dict(), strict=False)
    student.eval(), teacher.eval()
    generator = torch.Generator().manual_seed(seed)
    blocks = list(zip(student.residual_blocks(), teacher.residual_blocks()))
    bar = progress_bar(total=3 + 2 * len(blocks) + 3, progress=progress, desc="calibrate", unit="layer")
    names = {module: name for name, module in student.named_modules()}

    def layer(s: ConvLayer, t: ConvLayer, a_s, a_t, channels, centred=True, target=None):
        u_t = fit_layer(names[s], s, t, a_s, a_t, centred, positions, generator,
                        u_t_target(t, a_t, channels) if target is None else target)
        bar.update()
        return s(a_s), u_t

    def u_t_target(t: ConvLayer, a_t, channels):
        return None if channels is None else t(a_t)[:, channels]

    s = t = images.float()
    for conv, norm in (("conv1", "in1"), ("conv2", "in2"), ("conv3", "in3")):
        channels = keep["stream"] if norm == "in3" else keep[norm]
        u_s, u_t = layer(getattr(student, conv), getattr(teacher, conv), s, t, channels)
        n_t = getattr(teacher, norm)(u_t)
        s = F.relu(fit_norm(getattr(student, norm), u_s, _pick(n_t, channels)))
        t = F.relu(n_t)
    stream = keep["stream"]
    for index, (bs, bt) in enumerate(blocks):
        inner = keep[f"res{index + 1}"]
        u_s, u_t = layer(bs.conv1, bt.conv1, s, t, inner)
        y_t = bt.in1(u_t)
        y_s = bs.act(fit_norm(bs.in1, u_s, _pick(y_t, inner)))
        # The second convolution aims at the residual the stream needs, so each block also
        # corrects the drift the blocks before it left (the norm's affine absorbs the scale).
        t_next = t + bt.in2(bt.conv2(F.relu(y_t)))
        needed = _pick(t_next, stream) - s
        u_s, _ = layer(bs.conv2, bt.conv2, y_s, F.relu(y_t), stream, target=needed)
        s = s + fit_norm(bs.in2, u_s, needed)
        t = t_next
        log.info("%s: residual stream error %.4f", names[bs], relative_error(s, _pick(t, stream)))
    for conv, norm in (("deconv1", "in4"), ("deconv2", "in5")):
        u_s, u_t = layer(getattr(student, conv), getattr(teacher, conv), s, t, keep[norm])
        n_t = getattr(teacher, norm)(u_t)
        s = F.relu(fit_norm(getattr(student, norm), u_s, _pick(n_t, keep[norm])))
        t = F.relu(n_t)
    out_s, out_t = layer(student.deconv3, teacher.deconv3, s, t, None, centred=False)
    bar.close()
    return {"psnr_calibration_set": psnr(out_s, out_t)}


def _pick(x: torch.Tensor, channels: torch.Tensor | None) -> torch.Tensor:
    return x if channels is None else x[:, channels]


def select_channels(teacher: TransformerNet, width: int) -> dict[str, torch.Tensor | None]:
    """Which teacher channels a narrower student keeps, per norm layer (None: all of them).

    A channel's importance is its norm gain times the weight its consumers give it
    (squared norms), as in magnitude-based channel pruning; the residual stream's channels
    are chosen once for all blocks, from every layer that writes or reads the stream.
    """
    names = ["in1", "in2", "in4", "in5", "stream"] + [f"res{i + 1}" for i in range(teacher.blocks)]
    if width == teacher.width:
        return dict.fromkeys(names)
    scale = width / teacher.width

    def gain(norm: FrameNorm) -> torch.Tensor:
        return norm.weight.detach().pow(2)

    def reads(layer: ConvLayer) -> torch.Tensor:
        return layer.conv2d.weight.detach().pow(2).sum(dim=(0, 2, 3))

    def top(importance: torch.Tensor) -> torch.Tensor:
        return importance.topk(round(len(importance) * scale)).indices.sort().values

    blocks = teacher.residual_blocks()
    stream = gain(teacher.in3) + sum(gain(b.in2) for b in blocks)
    stream = stream * (sum(reads(b.conv1) for b in blocks) + reads(teacher.deconv1))
    keep = {"in1": top(gain(teacher.in1) * reads(teacher.conv2)), "in2": top(gain(teacher.in2) * reads(teacher.conv3)),
            "in4": top(gain(teacher.in4) * reads(teacher.deconv2)), "in5": top(gain(teacher.in5) * reads(teacher.deconv3)),
            "stream": top(stream)}
    keep.update({f"res{i + 1}": top(gain(b.in1) * reads(b.conv2)) for i, b in enumerate(blocks)})
    return keep


def relative_mse(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``|x - ref|^2 / |ref - mean(ref)|^2`` (per-image, per-channel mean): 1 is "no information".

    Differentiable, in the inputs' precision (the block-wise training loss).
    """
    centred = reference - reference.mean(dim=(2, 3), keepdim=True)
    return (x - reference).pow(2).mean() / centred.pow(2).mean().clamp_min(1e-12)


def relative_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    """:func:`relative_mse` in float64, as a number."""
    return float(relative_mse(x.double(), reference.double()))

