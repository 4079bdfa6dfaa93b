"""Block-wise distillation of a binary body on cached teacher features.

An end-to-end gradient step runs the whole network at full resolution, where a CPU spends
most of its time; the residual body runs at a sixteenth of the pixels. So the body is
trained first block by block: the teacher's residual stream at every block boundary is
cached once over whole training photos (each with its own instance-norm statistics, as at
inference), and each student block learns to map the student's own stream after the blocks
before it (so it corrects the drift they left, as calibration does) to the teacher's stream
after the same block. Every block gets a dense 128-channel target, and a step costs two
convolutions at quarter resolution. A short end-to-end stage (:mod:`vrstyle.train.distill`)
then fits the whole student to the teacher's pixels.

Degenerate case handled here: thresholds start from the data (a per-channel Lloyd-Max fit of
the block's own inputs), since a post-ReLU tensor binarised at threshold 0 is all ones.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vrstyle.errors import VrstyleError
from vrstyle.models.binary import BinaryConv2d
from vrstyle.models.transformer import TransformerNet
from vrstyle.progress import progress_bar
from vrstyle.train.calibrate import fit_activation, relative_mse
from vrstyle.train.data import load_batch

log = logging.getLogger(__name__)

CACHE_FILE = "features.pt"
CHECKPOINT_SECONDS = 300.0
"""How often a block in training hands its state to be checkpointed."""


@dataclass
class FeatureCache:
    """The teacher's residual stream at each block boundary, over whole photos (fp16).

    ``streams[0]`` is the stream entering the body (the encoder's output), ``streams[i]``
    the stream after block ``i``; each is (N, C, h, w). Photos are rotated to landscape and
    cropped to one size so they stack.
    """

    streams: list[torch.Tensor]
    photos: list[str]

    @classmethod
    @torch.no_grad()
    def build(cls, teacher: TransformerNet, paths: list[Path], progress: bool | None = None) -> "FeatureCache":
        teacher.eval()
        streams: list[list[torch.Tensor]] = [[] for _ in range(teacher.blocks + 1)]
        for image in progress_bar(load_batch(paths), progress, desc="teacher features", unit="photo"):
            for store, value in zip(streams, body_streams(teacher, image[None])):
                store.append(value.half())
        return cls([torch.cat(s) for s in streams], [p.name for p in paths])

    def save(self, path: Path) -> None:
        temporary = path.with_suffix(".tmp")
        torch.save({"streams": self.streams, "photos": self.photos}, temporary)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path, photos: list[str], blocks: int) -> "FeatureCache | None":
        """The cache at ``path`` if it holds these photos and blocks, else None."""
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            cache = cls(list(state["streams"]), list(state["photos"]))
        except Exception as exc:  # a half-written or foreign file: rebuild it
            log.warning("%s: unreadable feature cache (%s); rebuilding", path, exc)
            return None
        return cache if cache.photos == photos and len(cache.streams) == blocks + 1 else None


def body_streams(net: TransformerNet, x: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream entering the body and after each block (per-image statistics)."""
    y = F.relu(net.in1(net.conv1(x)))
    y = F.relu(net.in2(net.conv2(y)))
    y = F.relu(net.in3(net.conv3(y)))
    out = [y]
    for block in net.residual_blocks():
        y = block(y)
        out.append(y)
    return out


@torch.no_grad()
def init_thresholds(block: nn.Module, x: torch.Tensor, generator: torch.Generator) -> None:
    """Set the activation thresholds of a block's binary convolutions from the data.

    Runs the block on ``x`` hooking each binary convolution's input, so every threshold is
    fitted to what that convolution really sees (later ones after the earlier ones were set).
    """
    convs = [m for m in block.modules() if isinstance(m, BinaryConv2d) and m.act is not None]
    for conv in convs:
        handle = conv.register_forward_pre_hook(
            lambda module, inputs: fit_activation(module, inputs[0], generator, beta=1.0 / module.planes))
        block(x)
        handle.remove()


def train_block(block: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, steps: int, batch: int, lr: float,
                generator: torch.Generator, noise: float = 0.0, bar: tqdm | None = None, state: dict | None = None,
                on_checkpoint: Callable[[dict], None] | None = None) -> float:
    """Fit ``block(inputs) ~ targets`` by Adam with a cosine schedule; returns the final relative error.

    Args:
        block: the student block (trained in place).
        inputs, targets: (N, C, h, w) streams (fp16 or fp32, on the block's device).
        steps, batch, lr: optimisation budget.
        noise: stability term weight: the block's output on inputs perturbed by a small
            fraction of their spread should stay where it is on the clean inputs.
        state: where an interrupted call stood (given to ``on_checkpoint``), ``block`` holding
            its weights then: training goes on exactly as it would have.
        on_checkpoint: called with that state every :data:`CHECKPOINT_SECONDS` of training
            (a block takes 10-60 minutes on a CPU).
    """
    params = [p for p in block.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(steps, 1))))
    first = 0
    if state is not None:
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        first = state["step"]
    block.train()
    spread = inputs[: min(len(inputs), 16)].float().std() if noise else None
    error = float("nan")
    saved = time.monotonic()
    with torch.enable_grad():
        for step in range(first, steps):
            pick = torch.randint(len(inputs), (batch,), generator=generator)
            x, target = inputs[pick].float(), targets[pick].float()
            out = block(x)
            loss = relative_mse(out, target)
            error = loss.detach().item()
            if noise:
                jitter = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x) * (0.01 * spread)
                loss = loss + noise * relative_mse(block(x + jitter), out.detach())
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            if bar is not None:
                bar.set_postfix(error=f"{error:.4f}")
                bar.update()
            if on_checkpoint is not None and step + 1 < steps and time.monotonic() - saved >= CHECKPOINT_SECONDS:
                on_checkpoint({"step": step + 1, "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                               "generator": generator.get_state()})
                saved = time.monotonic()
    block.eval()
    return error


@torch.no_grad()
def run_block(block: nn.Module, inputs: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """``block`` over ``inputs`` in chunks (eval mode), stored like the inputs."""
    block.eval()
    return torch.cat([block(inputs[i:i + chunk].float()).to(inputs.dtype) for i in range(0, len(inputs), chunk)])


def train_body(student: TransformerNet, cache: FeatureCache, steps: int, batch: int, lr: float, seed: int,
               noise: float = 0.0, start_block: int = 0, progress: bool | None = None,
               on_block: Callable[[int, float, float], None] | None = None, resume: dict | None = None,
               on_checkpoint: Callable[[int, dict], None] | None = None) -> list[float]:
    """Train the student's residual blocks one after another on ``cache``.

    Block ``i`` maps the student's own stream after blocks ``< i`` (from ``cache.streams[0]``,
    the encoder output, which the float encoder reproduces exactly) to the teacher's stream
    after block ``i``. Blocks before ``start_block`` are taken as trained (a resumed run);
    ``resume`` is where block ``start_block`` stood (:func:`train_block`'s state), and
    ``on_checkpoint`` gets (block index, state) while a block trains.

    Returns:
        the final relative error of each block trained.
    """
    blocks = student.residual_blocks()
    if len(blocks) != len(cache.streams) - 1:
        raise VrstyleError(f"the student has {len(blocks)} residual blocks, the feature cache {len(cache.streams) - 1}")
    generator = torch.Generator().manual_seed(seed)
    stream = cache.streams[0]
    for block in blocks[:start_block]:
        stream = run_block(block, stream)
    errors = []
    done = resume["step"] if resume is not None else 0
    bar = progress_bar(total=steps * (len(blocks) - start_block), initial=done, progress=progress, desc="train blocks",
                       unit="step")
    for index in range(start_block, len(blocks)):
        started = time.perf_counter()
        block, target = blocks[index], cache.streams[index + 1]
        state = resume if index == start_block else None
        if state is None:
            init_thresholds(block, stream[:batch].float(), generator)
        before = float(relative_mse(run_block(block, stream[:64]).float(), target[:64].float()))
        error = train_block(block, stream, target, steps, batch, lr, generator, noise, bar, state,
                            None if on_checkpoint is None else lambda where, i=index: on_checkpoint(i, where))
        stream = run_block(block, stream)
        drift = float(relative_mse(stream.float(), target.float()))
        log.info("block %d: relative error %.4f -> %.4f (stream %.4f), %.0f s", index + 1, before, error, drift,
                 time.perf_counter() - started)
        errors.append(drift)
        if on_block is not None:
            on_block(index + 1, drift, time.perf_counter() - started)
    bar.close()
    return errors
