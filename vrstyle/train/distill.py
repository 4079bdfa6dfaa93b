"""Distillation: a student learns to reproduce its teacher's images.

Loss: mean squared error between student and teacher outputs (scaled to 0..1) plus a VGG19
perceptual term, optionally against teacher outputs colour-corrected ahead of time
(:func:`~vrstyle.train.losses.luminance_transfer`), plus a stability term (``noise``): the
student's output on the crop with uniform ±1 grey-level noise should stay where it is on the
clean crop (after Gupta et al., "Characterizing and Improving Stability in Neural Style
Transfer", ICCV 2017). Data: random crops and flips of BSDS500 train+val.

Initialisation (``init``): a layer-by-layer calibration (:mod:`vrstyle.train.calibrate`),
the teacher's weights, random, ``prune`` (a cartoon student cut from the cartoon teacher:
:func:`~vrstyle.models.cartoon.pruned_state`), or ``blockwise``: the teacher's weights as latent weights,
then each residual block trained on cached teacher features (:mod:`vrstyle.train.blockwise`,
``block_steps`` per block); the float encoder is then frozen, since the blocks learnt on
its exact output. ``init`` may also be a student model file (``.safetensors``) of the same
architecture and configuration: the run continues that student (its float encoder frozen, as
after block-wise training), e.g. more end-to-end steps for a shipped one. Gradient descent with
straight-through estimators (``steps``) follows, at a constant learning rate or on a cosine
``schedule`` down to zero at the last step (what a continued student needs to settle).
Checkpoints (model, optimiser, data and random state, block-wise progress) make a run
resumable; a CSV log records every step.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from vrstyle.errors import VrstyleError
from vrstyle.models import create_model, load_model
from vrstyle.models.binary import BinaryConv2d, Int8Conv2d
from vrstyle.models.cartoon import CartoonNet, pruned_state
from vrstyle.models.norm import FrameNorm
from vrstyle.models.transformer import ConvLayer
from vrstyle.models.packed import save_model
from vrstyle.models.registry import MODEL_SUFFIXES, load_weights
from vrstyle.progress import progress_bar
from vrstyle.train.blockwise import CACHE_FILE, FeatureCache, train_body
from vrstyle.train.calibrate import calibrate
from vrstyle.train.data import TRAIN_SETS, RandomCrops, data_dir, load_batch, photo_paths
from vrstyle.train.losses import VGGFeatures, luminance_transfer, perceptual_loss

log = logging.getLogger(__name__)

INITS = ("calibrate", "teacher", "random", "blockwise", "prune")
COLOURS = ("none", "luminance")
SCHEDULES = ("constant", "cosine")
IDENTITY = ("teacher", "arch", "config", "init", "calibration_images", "seed")
"""Settings that define the student of a run; the others (steps, batch, lr, ...) may change on resuming."""
ENCODER = ("conv1", "in1", "conv2", "in2", "conv3", "in3")
"""The layers before the residual body, frozen after block-wise training when full precision."""
CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"


@dataclass
class DistillConfig:
    """Everything a run depends on; stored in its checkpoint and in the exported model."""

    teacher: str = "candy"
    arch: str = "student"
    config: dict = field(default_factory=dict)
    init: str = "calibrate"
    calibration_images: int = 16
    steps: int = 0
    batch: int = 4
    crop: int = 128
    lr: float = 2e-4
    schedule: str = "constant"
    vgg_weight: float = 0.0
    colour: str = "none"
    noise: float = 0.0
    block_steps: int = 0
    block_batch: int = 4
    block_lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"

    def check(self) -> None:
        if self.init not in INITS and not self.continues:
            raise VrstyleError(f"unknown init {self.init!r}; use one of {', '.join(INITS)} or a student .safetensors file")
        if self.schedule not in SCHEDULES:
            raise VrstyleError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.colour not in COLOURS:
            raise VrstyleError(f"unknown colour correction {self.colour!r}; use one of {', '.join(COLOURS)}")
        for name in ("steps", "calibration_images", "block_steps"):
            if getattr(self, name) < 0:
                raise VrstyleError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch < 1 or self.block_batch < 1 or self.lr <= 0 or self.block_lr <= 0 or self.vgg_weight < 0 \
                or self.noise < 0:
            raise VrstyleError("batches must be >= 1, learning rates > 0, vgg weight and noise weight >= 0")
        if self.init == "blockwise" and self.calibration_images < 1:
            raise VrstyleError("block-wise training needs --calibration-images >= 1 photos for its features")

    @property
    def continues(self) -> bool:
        """Whether the run continues a student model file rather than initialising one."""
        return self.init.endswith(".safetensors")

    def lr_at(self, step: int) -> float:
        """The end-to-end learning rate at ``step`` (0-based) of ``steps``."""
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * step / max(self.steps, 1)))
        return self.lr


def teacher_name(teacher: str) -> str:
    """The model a ``--teacher`` means: a style's teacher (``candy`` -> ``candy/teacher``), or a
    model file as it is (a style trained with ``vrstyle train``)."""
    return teacher if teacher.endswith(MODEL_SUFFIXES) else f"{teacher}/teacher"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def initial_student(cfg: DistillConfig, teacher: torch.nn.Module, progress: bool | None) -> torch.nn.Module:
    """The student before gradient descent: calibrated, a copy of the teacher, random, or a student
    file continued."""
    student = create_model(cfg.arch, **cfg.config)
    if cfg.continues:
        try:
            load_weights(student, Path(cfg.init))
        except VrstyleError as exc:
            raise VrstyleError(f"--init is not a student of this --student/--config: {exc}") from None
    elif cfg.init == "calibrate":
        paths = photo_paths(("bsds500/train",))
        random.Random(cfg.seed).shuffle(paths)
        images = load_batch(paths[:cfg.calibration_images])
        try:
            result = calibrate(student, teacher, images, seed=cfg.seed, progress=progress)
        except ValueError as exc:
            raise VrstyleError(f"cannot calibrate this student: {exc}") from None
        log.info("calibrated on %d photos: %.2f dB", len(images), result["psnr_calibration_set"])
    elif cfg.init == "prune":
        if not isinstance(student, CartoonNet) or not isinstance(teacher, CartoonNet):
            raise VrstyleError("init 'prune' cuts a cartoon student from the cartoon teacher; use --init random")
        try:
            student.load_state_dict(pruned_state(teacher.state_dict(), student))
        except ValueError as exc:
            raise VrstyleError(f"cannot prune: {exc}") from None
    elif cfg.init in ("teacher", "blockwise"):
        missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
        if unexpected or any(key.endswith(("weight", "bias")) and "act." not in key for key in missing):
            raise VrstyleError("init 'teacher' needs a student with the teacher's layers; use --init random")
        with torch.no_grad():
            for module in student.modules():
                if isinstance(module, Int8Conv2d):
                    module.reset_scale()
                if isinstance(module, BinaryConv2d) and module.scale is not None:
                    module.scale.copy_(module.weight.abs().mean(dim=(1, 2, 3)))
    return student


def distill(cfg: DistillConfig, run_dir: Path, progress: bool | None = None) -> torch.nn.Module:
    """Run (or resume) a distillation in ``run_dir``; returns the trained student (eval mode)."""
    cfg.check()
    seed_everything(cfg.seed)
    device = torch.device(cfg.device)
    teacher = load_model(teacher_name(cfg.teacher)).to(device).requires_grad_(False)
    if cfg.continues and not (run_dir / CHECKPOINT).is_file() and not Path(cfg.init).is_file():
        raise VrstyleError(f"student file {cfg.init} (--init) does not exist")  # a resumed run needs it no more
    run_dir.mkdir(parents=True, exist_ok=True)  # once the teacher loads: a failed start leaves no empty folder
    checkpoint_path = run_dir / CHECKPOINT
    checkpoint = load_checkpoint(checkpoint_path, device) if checkpoint_path.is_file() else None
    if checkpoint is not None and _identity(checkpoint["config"]) != _identity(asdict(cfg)):
        raise VrstyleError(f"{checkpoint_path} belongs to another student ({_identity(checkpoint['config'])}); "
                           "use a new --run folder")
    started = time.perf_counter()
    if checkpoint is None:
        student = initial_student(cfg, teacher.cpu(), progress).to(device)
        teacher.to(device)
        step, seconds = 0, 0.0
    else:
        student = create_model(cfg.arch, **cfg.config).to(device)
        student.load_state_dict(checkpoint["model"])
        step, seconds = checkpoint["step"], checkpoint.get("seconds", 0.0)
        log.info("resuming %s at step %d", run_dir, step)
    blocks_done = checkpoint.get("blocks_done", 0) if checkpoint is not None else 0

    def elapsed() -> float:
        return seconds + time.perf_counter() - started

    if cfg.init == "blockwise" or cfg.continues:
        if cfg.init == "blockwise" and cfg.block_steps and blocks_done < len(student.residual_blocks()):
            def save(done: int, block_state: dict | None = None) -> None:
                _save_checkpoint(checkpoint_path, cfg, student, None, None, step, elapsed(), done,
                                 block_state=block_state)

            _train_blocks(cfg, run_dir, teacher, student, blocks_done, progress, save,
                          checkpoint.get("block_state") if checkpoint is not None else None)
        blocks_done = len(student.residual_blocks())
        for name in ENCODER:
            module = getattr(student, name)
            if all(type(m) in (torch.nn.Conv2d, FrameNorm, ConvLayer, torch.nn.ReflectionPad2d) for m in module.modules()):
                module.requires_grad_(False)

    if step >= cfg.steps:
        _save_checkpoint(checkpoint_path, cfg, student, None, None, step, elapsed(), blocks_done)
        return student.eval()
    optimiser = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=cfg.lr)
    crops = RandomCrops(photo_paths(TRAIN_SETS), cfg.crop, cfg.seed)
    if checkpoint is not None and "optimiser" in checkpoint:
        optimiser.load_state_dict(checkpoint["optimiser"])
        crops.restore(checkpoint["data"])
        torch.set_rng_state(checkpoint["rng"])
    vgg = VGGFeatures(data_dir() / "vgg" / "vgg19_features.pth").to(device) if cfg.vgg_weight else None
    student.train()
    new_log = not (run_dir / LOG).is_file()
    with torch.enable_grad(), open(run_dir / LOG, "a", newline="") as log_file, \
            progress_bar(total=cfg.steps, progress=progress, initial=step, desc=f"distill {cfg.teacher}",
                         unit="step") as bar:
        writer = csv.writer(log_file)
        if new_log:
            writer.writerow(["step", "loss", "mse", "perceptual", "stability", "seconds"])
        while step < cfg.steps:
            start = time.perf_counter()
            for group in optimiser.param_groups:
                group["lr"] = cfg.lr_at(step)
            x = crops.batch(cfg.batch).to(device)
            with torch.no_grad():
                target = teacher(x).clamp(0, 255)
                if cfg.colour == "luminance":
                    target = luminance_transfer(target, x).clamp(0, 255)
            out = student(x)
            mse = F.mse_loss(out / 255, target / 255)
            perceptual = perceptual_loss(vgg, out, target) if vgg is not None else torch.zeros(())
            stability = torch.zeros(())
            if cfg.noise:
                noisy = (x + torch.randint(-1, 2, x.shape, device=device)).clamp(0, 255)
                stability = F.mse_loss(student(noisy) / 255, out.detach() / 255)
            loss = mse + cfg.vgg_weight * perceptual + cfg.noise * stability
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            writer.writerow([step, f"{loss.item():.6g}", f"{mse.item():.6g}", f"{perceptual.item():.6g}",
                             f"{stability.item():.6g}", f"{time.perf_counter() - start:.3f}"])
            bar.set_postfix(mse=f"{mse.item():.2e}")
            bar.update()
            if step % 25 == 0 or step == cfg.steps:
                log_file.flush()
                _save_checkpoint(checkpoint_path, cfg, student, optimiser, crops, step, elapsed(), blocks_done)
    return student.eval()


BLOCK_LOG = "blocks.csv"


def _train_blocks(cfg: DistillConfig, run_dir: Path, teacher, student, blocks_done: int, progress: bool | None,
                  checkpoint, block_state: dict | None) -> None:
    """The block-wise stage: features cached in the run folder, a checkpoint after every block
    and every few minutes within one (``block_state``: where the block being trained stood)."""
    paths = photo_paths(TRAIN_SETS)
    random.Random(cfg.seed).shuffle(paths)
    paths = paths[:cfg.calibration_images]
    blocks = len(student.residual_blocks())
    cache = FeatureCache.load(run_dir / CACHE_FILE, [p.name for p in paths], blocks)
    if cache is None:
        cache = FeatureCache.build(teacher.cpu(), paths, progress)
        cache.save(run_dir / CACHE_FILE)
    device = next(student.parameters()).device
    teacher.to(device)
    cache.streams = [s.to(device) for s in cache.streams]
    new_log = not (run_dir / BLOCK_LOG).is_file()
    with open(run_dir / BLOCK_LOG, "a", newline="") as log_file:
        writer = csv.writer(log_file)
        if new_log:
            writer.writerow(["block", "relative_error", "seconds"])

        def done(block: int, error: float, seconds: float) -> None:
            writer.writerow([block, f"{error:.6g}", f"{seconds:.1f}"])
            log_file.flush()
            checkpoint(block)

        if block_state is not None:
            log.info("resuming block %d at step %d", blocks_done + 1, block_state["step"])
        train_body(student, cache, cfg.block_steps, cfg.block_batch, cfg.block_lr, cfg.seed + blocks_done,
                   start_block=blocks_done, progress=progress, on_block=done, resume=block_state,
                   on_checkpoint=checkpoint)


def _identity(config: dict) -> dict:
    return {key: config[key] for key in IDENTITY}


def load_checkpoint(path: Path, device) -> dict:
    """A run's own checkpoint, or one line saying it is damaged and what to do."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=False)  # our own file: the run's state
    except Exception as exc:  # truncated or overwritten files raise many types
        raise VrstyleError(f"{path} is damaged ({type(exc).__name__}); remove it to start the run over") from None
    if not isinstance(checkpoint, dict) or not {"config", "model", "step"} <= checkpoint.keys():
        raise VrstyleError(f"{path} is not a vrstyle distill checkpoint; remove it to start the run over")
    return checkpoint


def _save_checkpoint(path: Path, cfg: DistillConfig, student, optimiser, crops, step: int, seconds: float,
                     blocks_done: int = 0, block_state: dict | None = None) -> None:
    state = {"config": asdict(cfg), "model": student.state_dict(), "step": step, "seconds": seconds,
             "blocks_done": blocks_done}
    if block_state is not None:
        state["block_state"] = block_state
    if optimiser is not None:
        state.update(optimiser=optimiser.state_dict(), data=crops.state(), rng=torch.get_rng_state())
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def export(student: torch.nn.Module, cfg: DistillConfig, path: Path, name: str) -> int:
    """Write the student as a shipped model file (bit-packed); returns its size in bytes."""
    recipe = {k: v for k, v in asdict(cfg).items() if k not in ("arch", "config")}
    return save_model(student.cpu(), path, name, cfg.arch, cfg.config, {"recipe": json.dumps(recipe)})
