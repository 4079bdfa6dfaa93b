"""Optimisation-based style transfer (Gatys et al.) with optional deep dream, on VGG19 features.

Gatys, Ecker, Bethge, "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016:
the image itself is optimised so that its VGG19 features match the content photo's on the
content layers and its Gram matrices match the artwork's on the style layers, with a total
variation term for smoothness. Defaults follow jcjohnson/neural-style (content relu4_2, style
relu1_1..relu5_1, L-BFGS from random noise). Deep dream (Mordvintsev et al.,
2015) adds the maximisation of one more layer, or one channel of it, that neither loss uses,
so they do not undo it. Octaves optimise a small version first and refine it at doubling sizes.

Every loss is normalised by its target's magnitude (content by the mean square of the content
features, style by that of the artwork's Gram matrices, dream by the content photo's activation
energy at its layer, and taken as a logarithm so that it settles), so the weights do not depend
on the image size or the layers chosen.
It is slow by design (hundreds of VGG19 passes); the feed-forward networks are the fast path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.progress import progress_bar
from vrstyle.train.losses import RELU, VGGFeatures, gram, total_variation



@dataclass(frozen=True)
class Dream:
    """Deep dream on ``layer`` (a name in :data:`~vrstyle.train.losses.RELU`), one ``channel`` or all."""

    layer: str
    channel: int | None = None
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str, weight: float) -> "Dream":
        """``LAYER`` or ``LAYER:CHANNEL``, e.g. ``relu4_4:37``.

        >>> Dream.parse("relu4_4:37", 2.0)
        Dream(layer='relu4_4', channel=37, weight=2.0)
        """
        layer, _, channel = text.partition(":")
        if layer not in RELU:
            raise VrstyleError(f"--dream: VGG19 has no layer {layer!r}; it has {', '.join(RELU)}")
        if channel and not channel.isdigit():
            raise VrstyleError(f"--dream: channel must be a number, got {channel!r}")
        return cls(layer, int(channel) if channel else None, weight)


@dataclass(frozen=True)
class PaintConfig:
    """What :func:`paint` optimises and how."""

    content_layers: tuple[str, ...] = settings.PAINT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = settings.PAINT_STYLE_LAYERS
    content_weight: float = 1.0
    style_weight: float = settings.PAINT_STYLE_WEIGHT
    tv_weight: float = 1e-3
    steps: int = settings.PAINT_STEPS
    optimiser: str = "lbfgs"
    lr: float = 2.0
    """Adam's step, in grey levels."""
    init: str = "random"
    seed: int = 0
    octaves: int = 1
    dream: Dream | None = None

    def __post_init__(self) -> None:
        for name in self.content_layers + self.style_layers:
            if name not in RELU:
                raise VrstyleError(f"VGG19 has no layer {name!r}; it has {', '.join(RELU)}")
        if self.dream and self.dream.layer in self.content_layers + self.style_layers:
            raise VrstyleError(f"--dream layer {self.dream.layer} is also a content or style layer, which would "
                               "undo it; pick another")
        if self.optimiser not in settings.PAINT_OPTIMISERS:
            raise VrstyleError(f"unknown optimiser {self.optimiser!r}; use {' or '.join(settings.PAINT_OPTIMISERS)}")
        if self.init not in settings.PAINT_INITS:
            raise VrstyleError(f"unknown init {self.init!r}; use {' or '.join(settings.PAINT_INITS)}")
        if self.steps < 1 or self.octaves < 1 or self.lr <= 0 or min(self.content_weight, self.style_weight,
                                                                        self.tv_weight) < 0:
            raise VrstyleError("steps and octaves must be >= 1, the learning rate > 0 and weights >= 0")


@dataclass
class PaintHistory:
    """Loss terms (normalised, unweighted) at every evaluation of the last octave."""

    content: list[float] = field(default_factory=list)
    style: list[float] = field(default_factory=list)
    dream: list[float] = field(default_factory=list)

    def style_drop(self) -> float:
        """How many times lower the style loss ended than it started."""
        return self.style[0] / max(self.style[-1], 1e-30)


class _Objective:
    """The weighted loss of an image against fixed content, style and dream targets."""

    def __init__(self, vgg: VGGFeatures, config: PaintConfig, content: torch.Tensor, style: torch.Tensor):
        self.vgg, self.config = vgg, config
        with torch.no_grad():
            features = dict(zip(vgg.names, vgg(content)))
            self.content = {name: features[name] for name in config.content_layers}
            style_features = dict(zip(vgg.names, vgg(style)))
            self.grams = {name: gram(style_features[name]) for name in config.style_layers}
            dream = config.dream
            if dream and dream.channel is not None and dream.channel >= features[dream.layer].shape[1]:
                raise VrstyleError(f"--dream: {dream.layer} has {features[dream.layer].shape[1]} channels "
                                   f"(0 to {features[dream.layer].shape[1] - 1}), not channel {dream.channel}")
            self.dream_scale = _dream_energy(features[dream.layer], dream.channel) if dream else None

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        config = self.config
        features = dict(zip(self.vgg.names, self.vgg(image)))
        content = sum(F.mse_loss(features[n], t) / t.pow(2).mean().clamp_min(1e-12) for n, t in self.content.items())
        style = sum(F.mse_loss(gram(features[n]), g) / g.pow(2).mean().clamp_min(1e-12)
                    for n, g in self.grams.items()) / max(len(self.grams), 1)
        total = config.content_weight * content + config.style_weight * style
        total = total + config.tv_weight * total_variation(image)
        terms = {"content": content.item(), "style": style.item()}
        if config.dream:
            dream = _dream_energy(features[config.dream.layer], config.dream.channel) / self.dream_scale
            total = total - config.dream.weight * dream.log()  # log: each doubling gains the same, so it settles
            terms["dream"] = dream.item()
        return total, terms


def _dream_energy(features: torch.Tensor, channel: int | None) -> torch.Tensor:
    picked = features if channel is None else features[:, channel]
    return picked.pow(2).mean().clamp_min(1e-12)


def paint(vgg: VGGFeatures, content: torch.Tensor, style: torch.Tensor, config: PaintConfig = PaintConfig(),
          progress: bool | None = None) -> tuple[torch.Tensor, PaintHistory]:
    """Optimise an image to have ``content``'s content and ``style``'s style.

    Args:
        vgg: features with every layer ``config`` names (:func:`vgg_for`).
        content: (1, 3, H, W) RGB 0..255, the photo.
        style: (1, 3, h, w) RGB 0..255, the artwork (any size; use it at about the photo's).
        config: layers, weights, optimiser, steps (per octave), octaves, dream.
        progress: show a bar with the loss (None: as :mod:`vrstyle.progress` decides).

    Returns:
        The (1, 3, H, W) image in 0..255 and the loss history of the last (full-size) octave.

    Raises:
        VrstyleError: images too small for VGG19's pooling at the first octave.
    """
    generator = torch.Generator().manual_seed(config.seed)
    height, width = content.shape[-2:]
    sizes = [(max(1, round(height / 2**k)), max(1, round(width / 2**k))) for k in reversed(range(config.octaves))]
    if min(sizes[0]) < 32:
        raise VrstyleError(f"a {height}x{width} photo over {config.octaves} octaves is {sizes[0][0]}x{sizes[0][1]} "
                           "at the first; VGG19 needs at least 32 px")
    image = None
    history = PaintHistory()
    with progress_bar(total=config.steps * config.octaves, progress=progress, desc="paint", unit="step") as bar:
        for size in sizes:
            photo = _resize(content, size)
            objective = _Objective(vgg, config, photo, _resize(style, _style_size(style, size)))
            if image is None:
                image = photo.clone() if config.init == "content" else \
                    torch.rand(photo.shape, generator=generator).to(photo) * 255
            else:
                image = _resize(image.clamp(0, 255), size)
            history = PaintHistory()
            image = _optimise(image, objective, config, history, bar)
    return image.detach().clamp(0, 255), history


def _optimise(image: torch.Tensor, objective: _Objective, config: PaintConfig, history: PaintHistory,
              bar) -> torch.Tensor:
    image = image.detach().contiguous().clone().requires_grad_(True)
    # Summed over pixels rather than averaged: L-BFGS keeps a step's curvature only if y.s > 1e-10,
    # which the tiny steps of a mean loss never reach (it then never leaves the photo).
    scale = image.numel()

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss, terms = objective(image)
        loss = loss * scale
        loss.backward()
        for key, value in terms.items():
            getattr(history, key).append(value)
        return loss

    if config.optimiser == "lbfgs":
        optimiser = torch.optim.LBFGS([image], lr=1, max_iter=1, history_size=100, tolerance_grad=0.0,
                                      tolerance_change=0.0)
    else:
        optimiser = torch.optim.Adam([image], lr=config.lr)
    for _ in range(config.steps):
        loss = optimiser.step(closure)
        if not math.isfinite(loss.item()):
            raise VrstyleError("the optimisation diverged (loss is not finite); lower the weights or --lr")
        bar.set_postfix(style=f"{history.style[-1]:.3g}", content=f"{history.content[-1]:.3g}", refresh=False)
        bar.update()
    return image.detach()


def _style_size(style: torch.Tensor, size: tuple[int, int]) -> tuple[int, int]:
    """The artwork scaled so its longer side is the photo's longer side (jcjohnson's style scale 1)."""
    h, w = style.shape[-2:]
    scale = max(size) / max(h, w)
    return max(32, round(h * scale)), max(32, round(w * scale))


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    mode = "area" if size[0] < image.shape[-2] else "bicubic"
    return F.interpolate(image, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))


def vgg_for(path, config: PaintConfig) -> VGGFeatures:
    """VGG19 features holding every layer ``config`` uses."""
    layers = config.content_layers + config.style_layers + ((config.dream.layer,) if config.dream else ())
    return VGGFeatures(path, tuple(dict.fromkeys(layers)))
