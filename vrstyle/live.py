"""Live defaults: the eye size, tile grid and devices at which this machine stylises live.

``vrstyle mirror`` run with no size or worker options asks :func:`plan_live` what this
machine can do (and ``vrstyle headset`` starts its local workers on :func:`local_devices`).
With CUDA GPUs it starts one worker on each at the default eye size. On a CPU alone it
times the style's network on two small stereo pairs (once: the result is kept in the user's
cache folder, keyed by the machine, the versions and the model file), fits a fixed cost plus
a cost per pixel, and picks the largest eye size of the default eye's shape whose predicted
stylised frame rate, with the window sharing the cores, reaches :data:`LIVE_FPS`. On one
worker every eye is one tile with no halo: the plain network per eye, which both costs least
and is exact.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import vrstyle
from vrstyle import settings

log = logging.getLogger(__name__)

LIVE_FPS = 6.0
"""Stylised frames per second the chosen size is predicted to reach (the goal is 5: a margin)."""
CPU_SHARE = 0.6
"""Fraction of a lone worker's speed it keeps beside the window, the demo scene and a software
GL (measured on 2 cores: the mirror reached 0.55-0.68 of the calibrated rate)."""
CALIBRATION_SIZES = ((144, 128), (216, 192))
"""Stereo eye sizes (height, width) timed to fit the cost model."""
CALIBRATION_RUNS = 3
SMALLEST_WIDTH = 128
WIDTH_STEP = 32
CACHE_FILE = "live-calibration.json"


@dataclass(frozen=True)
class LivePlan:
    """What the mirror starts when told nothing: eye size, devices, and the grid."""

    eye_shape: tuple[int, int]
    """(height, width) of each eye."""
    devices: list[str]
    """One started worker per entry."""
    reason: str
    """The one line saying what was chosen and why."""

    @property
    def whole_eyes(self) -> bool:
        """One tile per eye, no halo (the plain network per eye): what one worker gets."""
        return len(self.devices) == 1


@dataclass(frozen=True)
class CpuCost:
    """Seconds to stylise a stereo pair of ``p`` pixels per eye: ``fixed + per_pixel * p``."""

    fixed: float
    per_pixel: float

    def fps(self, eye_shape: tuple[int, int]) -> float:
        """Stylised stereo frames per second at ``eye_shape`` beside the window."""
        return CPU_SHARE / max(self.fixed + self.per_pixel * eye_shape[0] * eye_shape[1], 1e-6)


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what Python knows."""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def eye_ladder(largest: tuple[int, int] = settings.EYE_SIZE) -> list[tuple[int, int]]:
    """Eye sizes (height, width) of ``largest``'s shape, widths from 128 px in 32 px steps.

    >>> eye_ladder((720, 640))[:3]
    [(144, 128), (180, 160), (216, 192)]
    """
    height, width = largest
    ladder = []
    for w in range(SMALLEST_WIDTH, width + 1, WIDTH_STEP):
        h = max(settings.ALIGN, round(w * height / width / settings.ALIGN) * settings.ALIGN)
        ladder.append((h, w))
    return ladder or [largest]


def choose_eye(cost: CpuCost, target_fps: float = LIVE_FPS,
               largest: tuple[int, int] = settings.EYE_SIZE) -> tuple[int, int]:
    """The largest eye of the ladder predicted to reach ``target_fps`` (else the smallest).

    >>> choose_eye(CpuCost(0.02, 1e-6))  # 20 ms plus 1 us an eye pixel: 256x288 eyes, 6.4 fps
    (288, 256)
    """
    ladder = eye_ladder(largest)
    fast_enough = [shape for shape in ladder if cost.fps(shape) >= target_fps]
    return fast_enough[-1] if fast_enough else ladder[0]


def plan_live(style: str, cache_dir: Path | None = None) -> LivePlan:
    """Eye size, devices and grid for a live mirror of ``style`` on this machine.

    Raises:
        VrstyleError: the style cannot be loaded here.
    """
    devices = local_devices()
    if devices != ["cpu"]:
        height, width = settings.EYE_SIZE
        return LivePlan(settings.EYE_SIZE, devices,
                        reason=f"{len(devices)} GPU(s): a worker on each of {', '.join(devices)}, {width}x{height} eyes; "
                               "--eye-size, --workers and --device to change")
    cost = cpu_cost(style, cache_dir)
    eye = choose_eye(cost)
    fps = cost.fps(eye)
    return LivePlan(eye, ["cpu"],
                    reason=f"CPU only: {eye[1]}x{eye[0]} eyes, whole, for about {fps:.2g} "
                           f"stylised fps with {style}; --eye-size to change")


def local_devices() -> list[str]:
    """Where workers started on this machine run: one on each CUDA GPU, else one on the CPU."""
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    return ["cpu"]


def cpu_cost(style: str, cache_dir: Path | None = None) -> CpuCost:
    """The fitted CPU cost of ``style``'s network here, from the cache or measured now (about a second)."""
    from vrstyle.models.registry import resolve_model

    spec = resolve_model(style)
    key = cache_key(spec.name, spec.path)
    path = (cache_dir or user_cache_dir()) / CACHE_FILE
    cached = _read_cache(path)
    try:
        return CpuCost(float(cached[key]["fixed"]), float(cached[key]["per_pixel"]))
    except (KeyError, TypeError, ValueError):  # not measured yet, or a damaged entry
        pass
    log.info("timing %s on this CPU for the live defaults (once; kept in %s)", spec.name, path)
    cost = measure_cpu_cost(spec.load())
    cached[key] = {"fixed": cost.fixed, "per_pixel": cost.per_pixel}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached, indent=1))
    except OSError as exc:  # a read-only home: measure again next time
        log.warning("cannot keep the calibration in %s: %s", path, exc)
    return cost


def cache_key(name: str, path: Path) -> str:
    """What a calibration holds for: vrstyle and torch versions, the CPU, and the model file."""
    stat = path.stat()
    return "|".join([vrstyle.__version__, _torch_version(), cpu_model(), str(os.cpu_count()), name,
                     str(stat.st_size), str(int(stat.st_mtime))])


def measure_cpu_cost(model) -> CpuCost:
    """Time ``model`` on stereo pairs of :data:`CALIBRATION_SIZES` as a worker runs a stream's
    frame (RGBA eyes, statistics given, the next frame's measured in the same pass), and fit a
    fixed cost plus a cost per eye pixel."""
    from vrstyle.models.engine import StyleEngine

    engine = StyleEngine(model)
    stats = np.stack([np.zeros(engine.stats_channels), np.ones(engine.stats_channels)]).astype(np.float32)
    rng = np.random.default_rng(0)
    points = []
    for height, width in CALIBRATION_SIZES:
        eyes = rng.integers(0, 256, (2, height, width, 4), dtype=np.uint8)
        engine.stylize_and_measure(eyes, stats, 0, 0)  # warm: kernels loaded, buffers allocated
        start = time.perf_counter()
        for _ in range(CALIBRATION_RUNS):
            engine.stylize_and_measure(eyes, stats, 0, 0)
        points.append((height * width, (time.perf_counter() - start) / CALIBRATION_RUNS))
    (small, t_small), (large, t_large) = points
    per_pixel = max((t_large - t_small) / (large - small), 1e-12)
    return CpuCost(max(t_small - per_pixel * small, 0.0), per_pixel)


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vrstyle`` (default ``~/.cache/vrstyle``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vrstyle"


def _torch_version() -> str:
    import torch

    return torch.__version__


def _read_cache(path: Path) -> dict:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}
