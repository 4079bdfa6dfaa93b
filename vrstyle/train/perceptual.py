"""A new feed-forward style from any artwork: Johnson et al.'s perceptual-loss training.

Johnson, Alahi, Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution"
(ECCV 2016): a :class:`~vrstyle.models.TransformerNet` learns, on crops of photos, to keep
each photo's VGG19 content (relu2_2) while matching the artwork's Gram matrices (relu1_2,
relu2_2, relu3_3, relu4_3), with total variation for smoothness. Losses are normalised by their
targets as in :mod:`vrstyle.paint`. Starting from an existing teacher (``init``, a style
name) fine-tunes it towards the new artwork, which converges far faster than from random
weights; the result is a network like the shipped teachers. Runs checkpoint and resume as
distillation does.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from vrstyle.errors import VrstyleError
from vrstyle.images import read_rgb
from vrstyle.models import STYLES, TransformerNet, load_model
from vrstyle.models.packed import save_model
from vrstyle.progress import progress_bar
from vrstyle.train.data import TRAIN_SETS, RandomCrops, data_dir, photo_paths
from vrstyle.train.losses import VGGFeatures, gram, total_variation

log = logging.getLogger(__name__)

CONTENT_LAYER = "relu2_2"
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CHECKPOINT, LOG = "checkpoint.pt", "log.csv"
CHECKPOINT_EVERY = 25
IDENTITY = ("style_hash", "init", "seed")
"""What defines a run's network; steps, batch, learning rate and weights may change on resuming."""


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in its checkpoint and in the model file."""

    style_image: str
    style_hash: str = ""
    init: str = "candy"
    """A teacher style to fine-tune, or ``random``."""
    steps: int = 1000
    batch: int = 4
    crop: int = 256
    style_size: int = 512
    """Longer side the artwork is measured at, px."""
    lr: float = 1e-3
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 1e-3
    seed: int = 0
    device: str = "cpu"

    def check(self) -> None:
        if self.init not in STYLES + ("random",):
            raise VrstyleError(f"--init must be a teacher style ({', '.join(STYLES)}) or random, got {self.init!r}")
        if self.steps < 0 or self.batch < 1 or self.crop < 32 or self.style_size < 32 or self.lr <= 0 \
                or min(self.content_weight, self.style_weight, self.tv_weight) < 0:
            raise VrstyleError("steps must be >= 0, batch >= 1, crop and style size >= 32 px, lr > 0, weights >= 0")


def artwork(path: Path, size: int) -> torch.Tensor:
    """(1, 3, h, w) float 0..255, the longer side ``size`` px; one line for files that are not images."""
    image = torch.from_numpy(read_rgb(path).copy()).permute(2, 0, 1)[None].float()
    scale = size / max(image.shape[-2:])
    shape = tuple(max(32, round(s * scale)) for s in image.shape[-2:])
    return F.interpolate(image, size=shape, mode="area" if scale < 1 else "bicubic",
                         **({} if scale < 1 else {"align_corners": False})).clamp(0, 255)


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class PerceptualLoss:
    """Content, style and TV terms of a batch against its photos and one artwork's Grams."""

    def __init__(self, vgg: VGGFeatures, style: torch.Tensor, cfg: TrainConfig):
        self.vgg, self.cfg = vgg, cfg
        with torch.no_grad():
            features = dict(zip(vgg.names, vgg(style)))
        self.grams = {name: gram(features[name]) for name in STYLE_LAYERS}

    def __call__(self, output: torch.Tensor, photos: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            target = dict(zip(self.vgg.names, self.vgg(photos)))[CONTENT_LAYER]
        features = dict(zip(self.vgg.names, self.vgg(output)))
        content = F.mse_loss(features[CONTENT_LAYER], target) / target.pow(2).mean().clamp_min(1e-12)
        style = sum(F.mse_loss(gram(features[n]), g.expand(len(output), -1, -1)) / g.pow(2).mean().clamp_min(1e-12)
                    for n, g in self.grams.items()) / len(self.grams)
        tv = total_variation(output / 255)
        cfg = self.cfg
        loss = cfg.content_weight * content + cfg.style_weight * style + cfg.tv_weight * tv
        return loss, {"content": content.item(), "style": style.item(), "tv": tv.item()}


def train_style(cfg: TrainConfig, run_dir: Path, progress: bool | None = None) -> TransformerNet:
    """Train (or resume) a feed-forward style network in ``run_dir``; returns it in eval mode.

    Raises:
        VrstyleError: the artwork is not an image, or ``run_dir`` holds a run of another
            artwork, init or seed, or a damaged checkpoint.
    """
    cfg.check()
    cfg.style_hash = file_hash(Path(cfg.style_image))
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    style = artwork(Path(cfg.style_image), cfg.style_size).to(device)
    vgg = VGGFeatures(data_dir() / "vgg" / "vgg19_features.pth", (CONTENT_LAYER,) + STYLE_LAYERS).to(device)
    crops = RandomCrops(photo_paths(TRAIN_SETS), cfg.crop, cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = run_dir / CHECKPOINT
    checkpoint = _load_checkpoint(checkpoint_path) if checkpoint_path.is_file() else None
    identity = {key: getattr(cfg, key) for key in IDENTITY}
    if checkpoint is not None and {key: checkpoint["config"][key] for key in IDENTITY} != identity:
        raise VrstyleError(f"{checkpoint_path} is a run of another artwork, init or seed "
                           f"({Path(checkpoint['config']['style_image']).name}, init {checkpoint['config']['init']}); "
                           "use a new --run folder")
    net = load_model(f"{cfg.init}/teacher") if cfg.init != "random" and checkpoint is None else TransformerNet()
    net = net.to(device).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    step, seconds = 0, 0.0
    if checkpoint is not None:
        net.load_state_dict(checkpoint["model"])
        optimiser.load_state_dict(checkpoint["optimiser"])
        for group in optimiser.param_groups:
            group["lr"] = cfg.lr
        crops.restore(checkpoint["data"])
        step, seconds = checkpoint["step"], checkpoint["seconds"]
        log.info("resuming %s at step %d", run_dir, step)
    loss_fn = PerceptualLoss(vgg, style, cfg)
    started = time.perf_counter()
    new_log = not (run_dir / LOG).is_file()
    with torch.enable_grad(), open(run_dir / LOG, "a", newline="") as log_file, \
            progress_bar(total=cfg.steps, initial=min(step, cfg.steps), progress=progress, desc="train",
                         unit="step") as bar:
        writer = csv.writer(log_file)
        if new_log:
            writer.writerow(["step", "loss", "content", "style", "tv", "seconds"])
        while step < cfg.steps:
            tick = time.perf_counter()
            photos = crops.batch(cfg.batch).to(device)
            loss, terms = loss_fn(net(photos), photos)
            if not torch.isfinite(loss):
                raise VrstyleError(f"training diverged at step {step + 1} (loss is not finite); lower --lr")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            writer.writerow([step, f"{loss.item():.6g}", *(f"{terms[k]:.6g}" for k in ("content", "style", "tv")),
                             f"{time.perf_counter() - tick:.3f}"])
            bar.set_postfix(style=f"{terms['style']:.3g}", content=f"{terms['content']:.3g}", refresh=False)
            bar.update()
            if step % CHECKPOINT_EVERY == 0 or step == cfg.steps:
                log_file.flush()
                _save_checkpoint(checkpoint_path, cfg, net, optimiser, crops, step,
                                 seconds + time.perf_counter() - started)
    return net.eval()


def _load_checkpoint(path: Path) -> dict:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)  # our own file: the run's state
    except Exception as exc:  # truncated or overwritten files raise many types
        raise VrstyleError(f"{path} is damaged ({type(exc).__name__}); remove it to start the run over") from None
    if not isinstance(checkpoint, dict) or not {"config", "model", "optimiser", "step"} <= checkpoint.keys() \
            or "style_hash" not in checkpoint["config"]:
        raise VrstyleError(f"{path} is not a vrstyle train checkpoint; use a new --run folder")
    return checkpoint


def _save_checkpoint(path: Path, cfg: TrainConfig, net, optimiser, crops, step: int, seconds: float) -> None:
    state = {"config": asdict(cfg), "model": net.state_dict(), "optimiser": optimiser.state_dict(),
             "data": crops.state(), "step": step, "seconds": seconds}
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def run_seconds(run_dir: Path) -> float:
    """Training time a run folder has recorded."""
    return _load_checkpoint(run_dir / CHECKPOINT)["seconds"]


def export_style(net: TransformerNet, cfg: TrainConfig, path: Path, name: str) -> int:
    """Write the network as a model file vrstyle loads by path; returns its size in bytes."""
    recipe = json.dumps({**asdict(cfg), "style_image": Path(cfg.style_image).name})
    return save_model(net.cpu(), path, name, "johnson", {"width": net.width, "blocks": net.blocks},
                      {"recipe": recipe})
