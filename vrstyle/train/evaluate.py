"""Evaluation of students against their teacher: fidelity, size, arithmetic and CPU speed.

Fidelity is measured on held-out photos (Kodak24, BSDS500 test) at full size, on the uint8
images a user gets, each network normalising with its own per-image statistics: PSNR, SSIM
and a VGG19 feature distance (relu3_1 features, squared error relative to the teacher's).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vrstyle.images import read_rgb, write_rgb
from vrstyle.models.binary import BinaryConv2d, Int8Conv2d
from vrstyle.models.engine import StyleEngine
from vrstyle.models.transformer import STRIDE, ConvLayer
from vrstyle.progress import progress_bar
from vrstyle.train.data import data_dir, photo_paths
from vrstyle.train.losses import VGGFeatures, psnr, ssim

SPEED_SIZE = (512, 768)
"""Image (height, width) timed for CPU speed: one Kodak frame."""


@dataclass
class Cost:
    """Arithmetic per output pixel, by kind."""

    float_macs: float = 0.0
    int8_macs: float = 0.0
    binary_weight_macs: float = 0.0
    """Full-precision inputs times ±1 weights: additions and subtractions."""
    binary_ops: float = 0.0
    """1-bit multiply-adds (AND + popcount) of binary convolutions, all activation planes."""

    @property
    def total_macs(self) -> float:
        return self.float_macs + self.int8_macs + self.binary_weight_macs + self.binary_ops


def arithmetic(model: nn.Module, size: int = 64) -> Cost:
    """Multiply-adds per pixel of each kind, counted on a ``size`` x ``size`` forward pass (an
    upsampling layer that folds its kernel reads 2x2 low-resolution taps per output, not 3x3)."""
    cost = Cost()

    def count(module: nn.Conv2d, inputs, output, taps: int | None = None) -> None:
        per_output = module.in_channels // module.groups * (taps or module.kernel_size[0] * module.kernel_size[1])
        macs = per_output * output.numel() / output.shape[0] / (size * size)
        if isinstance(module, BinaryConv2d):
            macs *= module.bases  # the output is the bases' sum: each base is a convolution of its own
            if module.act is not None:
                cost.binary_ops += macs * module.planes
            else:
                cost.binary_weight_macs += macs
        elif isinstance(module, Int8Conv2d):
            cost.int8_macs += macs
        else:
            cost.float_macs += macs

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(lambda layer, inputs, output: count(layer.conv2d, inputs, output, taps=4))
              for m in model.modules() if isinstance(m, ConvLayer) and m.folds_upsampling]
    with torch.no_grad():
        model(torch.rand(1, 3, size, size) * 255)
    for hook in hooks:
        hook.remove()
    return cost


@dataclass
class Report:
    """One model's evaluation (see the module docstring)."""

    name: str
    file_bytes: int
    psnr: float
    ssim: float
    vgg_distance: float
    images: int
    cost: dict = field(default_factory=dict)
    cpu_seconds_per_frame: float | None = None
    popcount_seconds_per_frame: float | None = None
    per_set: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def eval_photo(path: Path) -> np.ndarray:
    """A held-out photo as (H, W, 3) uint8, cropped to multiples of the network stride."""
    image = read_rgb(path)
    return image[:image.shape[0] - image.shape[0] % STRIDE, :image.shape[1] - image.shape[1] % STRIDE]


def photo_set(photo: Path) -> str:
    """``kodak24`` or ``bsds500/test``: the set a photo belongs to, as named in the data folder."""
    parent = photo.parent
    return parent.name if parent.parent.name == "photos" else f"{parent.parent.name}/{parent.name}"


def photo_key(photo: Path) -> str:
    """``kodak24-kodim01``: a photo's name, unique across sets."""
    return f"{photo.parent.name}-{photo.stem}"


class TeacherCache:
    """Teacher outputs (uint8 PNG) per style and photo, computed once."""

    def __init__(self, folder: Path, style: str, teacher: nn.Module):
        self.folder = folder / style
        self.folder.mkdir(parents=True, exist_ok=True)
        self.teacher = teacher
        self.engine: StyleEngine | None = None

    def output(self, photo: Path, image: np.ndarray) -> np.ndarray:
        path = self.folder / f"{photo_key(photo)}.png"
        if path.is_file():
            return read_rgb(path)
        self.engine = self.engine or StyleEngine(self.teacher)
        styled = self.engine.stylize(image[None], stats=None)[0]
        write_rgb(path, styled)
        return styled


def evaluate(model: nn.Module, name: str, file_bytes: int, teacher: TeacherCache, sets: tuple[str, ...],
             limit: int | None = None, vgg: VGGFeatures | None = None, progress: bool | None = None,
             keep: dict[str, np.ndarray] | None = None) -> Report:
    """Compare ``model`` with the teacher on the photos of ``sets`` (the first ``limit`` of each).

    Args:
        keep: if given, the model's output for each photo is stored in it by :func:`photo_key`.
    """
    engine = StyleEngine(model)
    vgg = vgg or VGGFeatures(data_dir() / "vgg" / "vgg19_features.pth", ("relu3_1",))
    per_set: dict[str, dict[str, list[float]]] = {}
    paths = photo_paths(sets, limit)
    for path in progress_bar(paths, progress, desc=f"eval {name}", unit="photo"):
        image = eval_photo(path)
        reference = teacher.output(path, image)
        styled = engine.stylize(image[None], stats=None)[0]
        if keep is not None:
            keep[photo_key(path)] = styled
        out_t = torch.from_numpy(styled).permute(2, 0, 1)[None].float()
        ref_t = torch.from_numpy(reference.copy()).permute(2, 0, 1)[None].float()  # cached PNGs are read-only
        with torch.no_grad():
            (f_out,), (f_ref,) = vgg(out_t), vgg(ref_t)
        scores = per_set.setdefault(photo_set(path), {"psnr": [], "ssim": [], "vgg": []})
        scores["psnr"].append(psnr(out_t, ref_t))
        scores["ssim"].append(ssim(out_t, ref_t))
        scores["vgg"].append(float((f_out - f_ref).pow(2).mean() / f_ref.pow(2).mean()))
    everything = {key: [v for s in per_set.values() for v in s[key]] for key in ("psnr", "ssim", "vgg")}
    cost = arithmetic(model)
    return Report(name=name, file_bytes=file_bytes, psnr=float(np.mean(everything["psnr"])),
                  ssim=float(np.mean(everything["ssim"])), vgg_distance=float(np.mean(everything["vgg"])),
                  images=len(paths), cost=asdict(cost) | {"total_macs": cost.total_macs},
                  per_set={k: {m: float(np.mean(v)) for m, v in s.items()} for k, s in per_set.items()})


def reference_report(teacher: nn.Module, name: str, file_bytes: int) -> Report:
    """The teacher's own row: identical to itself by definition, with its size and arithmetic."""
    cost = arithmetic(teacher)
    return Report(name=name, file_bytes=file_bytes, psnr=float("inf"), ssim=1.0, vgg_distance=0.0, images=0,
                  cost=asdict(cost) | {"total_macs": cost.total_macs})


def cpu_seconds(model: nn.Module, repeats: int = 3, size: tuple[int, int] = SPEED_SIZE) -> float:
    """Median seconds to stylise one ``size`` frame on the CPU (per-image statistics)."""
    x = torch.rand(1, 3, *size) * 255
    times = []
    with torch.inference_mode():
        model(x[..., :64, :64])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return float(np.median(times))
