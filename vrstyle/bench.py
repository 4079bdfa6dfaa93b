"""The headless tile-throughput benchmark behind ``vrstyle bench`` and ``benchmarks/tile_throughput.py``.

Stereo frames of a headset's eye size go through the real pipeline: cut into tiles, sent
through a broker to style worker processes (started here with
:class:`~vrstyle.transport.cluster.LocalCluster`, or those of ``--broker``), stitched on the
CPU. In the same run the same model runs in this process (a) on whole frames and (b) on the
same tiles without transport, so what tiling and transport cost are ratios measured side by
side. A list of worker counts is a sweep with scaling efficiency.

Frames go ``depth`` at a time (closed loop: as fast as they come back), or at ``rate`` Hz
(open loop: a headset's frame clock), optionally with a deadline after which missing tiles
are filled in (fallbacks), as the headset client does. Every frame is collected in order, so
every tile is accounted for: stylised or fallback.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

import tiles
from tiles import TileGrid
from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.normstats import combine_moments, moments_to_stats
from vrstyle.stats import summarize

log = logging.getLogger(__name__)

STAGES = ("split", "send", "queue", "inference", "return", "collect", "stitch")
"""A frame's latency, stage by stage along its critical path (see :class:`~vrstyle.pipeline.FrameResult`)."""
_CRITICAL = {"queue": "last_queue", "inference": "last_inference", "return": "last_return"}


@dataclass
class BenchConfig:
    """Everything a benchmark run depends on (all of it goes into the JSON).

    Attributes:
        eye: the preset name or "WxH" as given; ``eye_shape`` is (height, width) per eye.
        workers: worker counts to sweep (ignored with ``broker``: its workers are used).
        devices: devices handed to started workers in turn (``cuda`` means one per visible GPU).
        fp16, compile: None means the worker default (on for CUDA, off for CPU).
        rate: frames submitted per second (None: closed loop, ``depth`` frames in flight).
        deadline_ms: fill tiles not back this long after submission (None: wait for all).
        source: ``["synthetic"]``, a folder, one image, or a left and a right image.
        threads: torch threads per CPU worker and in this process (None: cores / workers).
    """

    eye: str = settings.BENCH_EYE
    eye_shape: tuple[int, int] = settings.EYE_PRESETS[settings.BENCH_EYE]
    eyes: int = 2
    tile: int = settings.TILE
    halo: int = settings.HALO
    overlap: int = settings.OVERLAP
    workers: list[int] = field(default_factory=lambda: [1])
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    style: str = settings.DEFAULT_STYLE
    fp16: bool | None = None
    compile: bool | None = None
    frames: int = settings.BENCH_FRAMES
    warmup: int = settings.BENCH_WARMUP
    rate: float | None = None
    deadline_ms: float | None = None
    source: list[str] = field(default_factory=lambda: ["synthetic"])
    broker: str | None = None
    curve: str | None = None
    key_name: str = "client"
    threads: int | None = None
    request_tiles: int = settings.REQUEST_TILES
    depth: int = settings.PIPELINE_DEPTH


def parse_eye(text: str) -> tuple[str, tuple[int, int]]:
    """A preset name or WxH -> (name, (height, width)).

    >>> parse_eye("quest3")
    ('quest3', (2208, 2064))
    >>> parse_eye("96x80")
    ('96x80', (80, 96))
    """
    key = text.lower().replace(" ", "")
    if key in settings.EYE_PRESETS:
        return key, settings.EYE_PRESETS[key]
    try:
        width, height = (int(part) for part in key.split("x"))
    except ValueError:
        raise VrstyleError(f"unknown eye preset {text!r}; use {', '.join(settings.EYE_PRESETS)} or WIDTHxHEIGHT "
                           "such as 2064x2208") from None
    if width < 16 or height < 16:
        raise VrstyleError(f"eye size {text} is too small (at least 16x16)")
    return text, (height, width)


def parse_counts(text: str) -> list[int]:
    """Worker counts "1,2,4" -> [1, 2, 4]; each at least 1.

    >>> parse_counts("1, 2,4")
    [1, 2, 4]
    """
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise VrstyleError(f"--workers takes counts like 1,2,4, got {text!r}") from None
    if any(count < 1 for count in counts):
        raise VrstyleError(f"worker counts must be at least 1, got {text}")
    return sorted(set(counts))


def worker_devices(devices: list[str], count: int) -> list[str]:
    """The device of each of ``count`` started workers: the list in turn, ``cuda`` spread over the GPUs."""
    if devices == ["cuda"]:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible == 0:
            raise VrstyleError("--device cuda requested but CUDA is not available on this machine")
        return [f"cuda:{i % visible}" for i in range(count)]
    return [devices[i % len(devices)] for i in range(count)]


def check(config: BenchConfig) -> TileGrid:
    """Validate the configuration before anything starts; returns the grid of one eye.

    Raises:
        VrstyleError, GridError: a problem the user can fix, in one line.
    """
    height, width = config.eye_shape
    if config.tile > max(height, width):
        raise VrstyleError(f"tile {config.tile} px is larger than the {width}x{height} eye; "
                           f"use --tile {max(height, width)} or less")
    for name in ("frames", "request_tiles", "depth"):
        if getattr(config, name) < 1:
            raise VrstyleError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
    if config.warmup < 0:
        raise VrstyleError(f"--warmup must be 0 or more, got {config.warmup}")
    if not config.workers or min(config.workers) < 1:
        raise VrstyleError(f"worker counts must be at least 1, got {config.workers}")
    if config.rate is not None and not config.rate > 0:
        raise VrstyleError(f"--rate must be positive, got {config.rate}")
    if config.deadline_ms is not None and not config.deadline_ms > 0:
        raise VrstyleError(f"--deadline must be positive, got {config.deadline_ms}")
    if config.curve and not config.broker:
        raise VrstyleError("--curve needs --broker")
    cuda = [d for d in config.devices if d.startswith("cuda")]
    if config.fp16 and not cuda:
        raise VrstyleError("--fp16 needs a CUDA device (--device cuda)")
    return tiles.plan_grid(height, width, config.tile, config.halo, config.overlap, settings.ALIGN)


# Frames.


def synthetic_frames(eyes: int, shape: tuple[int, int], count: int = settings.BENCH_SYNTHETIC_FRAMES) -> list[np.ndarray]:
    """A moving colour pattern with stereo disparity: ``count`` (eyes, H, W, 3) uint8 frames.

    >>> frames = synthetic_frames(2, (16, 24), 2)
    >>> len(frames), frames[0].shape, bool((frames[0] != frames[1]).any())
    (2, (2, 16, 24, 3), True)
    """
    height, width = shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disparity = max(width // 64, 1)
    frames = []
    for k in range(count):
        phase = 2 * math.pi * k / count
        views = []
        for eye in range(eyes):
            u = x + eye * disparity
            rings = np.sin(np.hypot(u - width / 2, y - height / 2) / 23 - 3 * phase)
            views.append(np.stack([np.sin(u / 37 + phase) + rings, np.sin(y / 53 - phase) - rings,
                                   np.sin((u + y) / 71 + 2 * phase)], -1))
        frames.append(np.clip(127.5 + 63.75 * np.stack(views), 0, 255).astype(np.uint8))
    return frames


def load_frames(config: BenchConfig, count: int) -> tuple[str, list[np.ndarray]]:
    """(source name, distinct frames to cycle through) at exactly the configured eye size."""
    if config.source == ["synthetic"]:
        return "synthetic", synthetic_frames(config.eyes, config.eye_shape, min(count, settings.BENCH_SYNTHETIC_FRAMES))
    from vrstyle.sources import PhotoFolder, cover, open_source

    source = open_source(config.source, largest=config.eye_shape)
    photos = len(source.paths) if isinstance(source, PhotoFolder) else 1
    frames = []
    for index in range(min(count, photos, settings.BENCH_SYNTHETIC_FRAMES)):
        stereo = source.frame(index * getattr(source, "seconds", 0.0))
        frames.append(np.stack([cover(view, config.eye_shape) for view in stereo[:config.eyes]]))
    return source.name, frames


# Measuring.


@dataclass
class Run:
    """One configuration measured: per-frame records and the wall time of the timed frames."""

    label: str
    workers: int | None
    records: list[dict[str, Any]]
    elapsed_s: float
    counters: dict[str, int] = field(default_factory=dict)


def frame_record(index: int, result, tiles_per_frame: int, requests: int | None = None) -> dict[str, Any]:
    """What the JSON keeps of one frame: its latency, its stages and what became of its tiles.

    ``requests`` given means an in-process backend, where every request ran inside ``send``:
    their inference is taken out of it, so the stages still add up to the latency.
    """
    timings = result.timings
    stages = {stage: timings.get(_CRITICAL.get(stage, stage), 0.0) for stage in STAGES}
    if requests is not None:
        inference = timings["inference"] * requests
        stages.update(send=max(timings["send"] - inference, 0.0), queue=0.0, inference=inference, **{"return": 0.0})
    fallback = dict(Counter(f.reason for f in result.fallback.values()))
    return {"frame": index, "latency_s": timings["total"] + timings.get("stitch", 0.0), "total_s": timings["total"],
            "stages_s": stages, "request_means_s": {k: timings[k] for k in ("queue", "inference", "return")},
            "tiles": tiles_per_frame, "stylised": tiles_per_frame - len(result.fallback), "fallback": fallback}


def stream(pipeline, frames: list[np.ndarray], count: int, rate: float | None, bar: tqdm | None,
           first_index: int = 0, in_process: bool = False) -> tuple[list[dict[str, Any]], float]:
    """Push ``count`` frames through ``pipeline`` and collect every one, in order.

    Closed loop (``rate`` None): up to ``pipeline.depth`` frames in flight. Open loop: frame
    ``i`` is submitted at ``i / rate`` s (later if ``depth`` frames are still out).

    Returns:
        (one :func:`frame_record` per frame, seconds from the first submission to the last result)
    """
    tiles_per_frame = pipeline.eyes * len(pipeline.grid)
    requests = math.ceil(tiles_per_frame / pipeline.request_tiles) if in_process else None
    records: list[dict[str, Any]] = []
    order: list[tuple[int, int]] = []  # (frame id, index) in flight, oldest first

    def collect() -> None:
        frame_id, index = order.pop(0)
        result = pipeline.result(frame_id)
        result.stitched()
        records.append(frame_record(index, result, tiles_per_frame, requests))
        if bar is not None:
            bar.update(1)

    start = time.monotonic()
    for i in range(count):
        if rate is not None:
            due = start + i / rate
            while time.monotonic() < due:
                if order and pipeline.ready(order[0][0]):
                    collect()
                else:
                    time.sleep(min(max(due - time.monotonic(), 0.0), 0.0005))
        while len(order) >= pipeline.depth:
            collect()
        order.append((pipeline.submit(frames[(first_index + i) % len(frames)]), first_index + i))
        while order and pipeline.ready(order[0][0]):
            collect()
    while order:
        collect()
    return records, time.monotonic() - start


def measure_pipeline(backend, grid: TileGrid, style: str, config: BenchConfig, frames: list[np.ndarray],
                     label: str, workers: int | None, progress: bool | None) -> Run:
    """Warm-up frames, then the timed frames, through a fresh :class:`~vrstyle.pipeline.FramePipeline`."""
    from vrstyle.pipeline import FramePipeline
    from vrstyle.transport.local import LocalBackend

    in_process = isinstance(backend, LocalBackend)
    deadline = None if config.deadline_ms is None else config.deadline_ms / 1000
    pipeline = FramePipeline(backend, grid, style, eyes=config.eyes, deadline_s=deadline,
                             request_tiles=config.request_tiles, depth=config.depth)
    with tqdm(total=config.warmup + config.frames, desc=label, unit="frame", disable=_quiet(progress)) as bar:
        if config.warmup:
            stream(pipeline, frames, config.warmup, config.rate, bar)
        records, elapsed = stream(pipeline, frames, config.frames, config.rate, bar, config.warmup, in_process)
    return Run(label, workers, records, elapsed, dict(pipeline.counters))


def measure_whole_frames(engine, frames: list[np.ndarray], config: BenchConfig, progress: bool | None) -> Run:
    """The same model on whole eyes in this process, both eyes in one batch, with given statistics."""
    _, moments = engine.stylize_and_measure(frames[0], None, 0, 0)
    stats = moments_to_stats(combine_moments(moments)).astype(np.float32)
    records = []
    tiles_per_frame = config.eyes
    start = time.monotonic()
    for i in tqdm(range(config.warmup + config.frames), desc="in process, whole eyes", unit="frame",
                  disable=_quiet(progress)):
        if i == config.warmup:
            start = time.monotonic()
        began = time.monotonic()
        engine.stylize_and_measure(frames[i % len(frames)], stats, 0, 0)
        took = time.monotonic() - began
        if i >= config.warmup:
            records.append({"frame": i, "latency_s": took, "total_s": took,
                            "stages_s": {stage: took if stage == "inference" else 0.0 for stage in STAGES},
                            "tiles": tiles_per_frame, "stylised": tiles_per_frame, "fallback": {}})
    return Run("in process, whole eyes", None, records, time.monotonic() - start)


def summarize_run(run: Run, config: BenchConfig) -> dict[str, Any]:
    """Rates, latency percentiles, stage means and tile accounting of one run."""
    frames = len(run.records)
    rate = (lambda amount: amount / run.elapsed_s) if run.elapsed_s > 0 else (lambda amount: float("nan"))
    eye_pixels = config.eyes * config.eye_shape[0] * config.eye_shape[1]
    fallback = dict(sum((Counter(record["fallback"]) for record in run.records), Counter()))
    tiles_done = sum(r["tiles"] for r in run.records)
    return {
        "label": run.label, "workers": run.workers, "frames": frames, "elapsed_s": run.elapsed_s,
        "frames_per_s": rate(frames), "tiles_per_s": rate(tiles_done), "megapixels_per_s": rate(frames * eye_pixels / 1e6),
        "latency_s": summarize(r["latency_s"] for r in run.records),
        "stages_mean_s": {stage: summarize(r["stages_s"][stage] for r in run.records)["mean"] for stage in STAGES},
        "tiles": tiles_done, "stylised": sum(r["stylised"] for r in run.records),
        "fallback": fallback, "fallback_tiles": sum(fallback.values()),
        "deadline_misses": (sum(bool(r["fallback"]) for r in run.records) if config.deadline_ms is not None else None),
        "counters": run.counters, "records": run.records,
    }


def run_benchmark(config: BenchConfig, progress: bool | None = None, command: str = "") -> dict[str, Any]:
    """Run every configuration and return the full result (what the JSON holds).

    Raises:
        VrstyleError: bad options, unknown styles, unreachable brokers, workers that fail to start.
    """
    grid = check(config)
    height, width = config.eye_shape
    from vrstyle.models import resolve_model

    spec = resolve_model(config.style)
    tiles_per_frame = config.eyes * len(grid)
    source_name, frames = load_frames(config, config.warmup + config.frames)
    count = max(config.workers)
    local_devices = [] if config.broker else worker_devices(config.devices, count)
    threads = config.threads or max(1, (os.cpu_count() or 1) // count)
    import torch

    if not any(d.startswith("cuda") for d in local_devices + config.devices):
        torch.set_num_threads(threads)
    log.info("%s: %d %s eye(s) of %dx%d, %d tiles of %dx%d px per frame, source %s", spec.name, config.eyes,
             config.eye, config.eye_shape[1], config.eye_shape[0], tiles_per_frame, grid.in_shape[1],
             grid.in_shape[0], source_name)
    # An unreachable broker fails here, before anything is measured.
    client, remote_workers, remote_style = _remote(config, spec.name) if config.broker else (None, 0, "")
    runs: list[Run] = []
    baselines: list[Run] = []
    try:
        baselines = _baselines(config, spec, grid, frames, (local_devices or config.devices)[0], progress)
        if client is not None:
            runs.append(measure_pipeline(client, grid, remote_style, config, frames,
                                         f"broker, {remote_workers} workers", remote_workers, progress))
        else:
            for workers in config.workers:
                runs.append(_local_run(config, spec.name, grid, frames, workers, local_devices[:workers], threads, progress))
    finally:
        if client is not None:
            client.close()
    result = {
        "command": command,
        "environment": environment(local_devices or config.devices),
        "config": {**asdict(config), "model": spec.name, "threads": threads, "source_name": source_name},
        "grid": {"rows": grid.rows, "cols": grid.cols, "core": [grid.core_h, grid.core_w],
                 "in_shape": list(grid.in_shape), "out_shape": list(grid.out_shape), "tiles_per_eye": len(grid),
                 "tiles_per_frame": tiles_per_frame,
                 "pixels_computed_per_eye_pixel": len(grid) * grid.in_shape[0] * grid.in_shape[1] / (height * width)},
        "baselines": [summarize_run(run, config) for run in baselines],
        "sweep": [summarize_run(run, config) for run in runs],
    }
    add_ratios(result)
    return result


def add_ratios(result: dict[str, Any]) -> None:
    """Throughput ratios side by side: tiling cost, transport cost, scaling efficiency."""
    base = {row["label"]: row["frames_per_s"] for row in result["baselines"]}
    whole, tiled = base.get("in process, whole eyes"), base.get("in process, tiles")
    sweep = result["sweep"]
    smallest = sweep[0] if sweep else None
    for row in sweep:
        row["vs_whole_eyes"] = row["frames_per_s"] / whole if whole else None
        row["vs_in_process_tiles"] = row["frames_per_s"] / tiled if tiled else None
        if smallest is not None and row["workers"] and smallest["workers"]:
            ideal = smallest["frames_per_s"] * row["workers"] / smallest["workers"]
            row["scaling_efficiency"] = row["frames_per_s"] / ideal
        else:
            row["scaling_efficiency"] = None
    result["ratios"] = {
        "tiling_cost": whole / tiled if whole and tiled else None,
        "transport_cost": tiled / smallest["frames_per_s"] if tiled and smallest else None,
        "transport_cost_workers": smallest["workers"] if smallest else None,
    }


def _baselines(config: BenchConfig, spec, grid: TileGrid, frames: list[np.ndarray], device: str,
               progress: bool | None) -> list[Run]:
    """The same model in this process: on whole eyes, and on the same tiles without transport."""
    import torch

    from vrstyle.models import StyleEngine
    from vrstyle.transport.local import LocalBackend

    device = "cuda:0" if device == "cuda" else device
    cuda = device.startswith("cuda")
    engine = StyleEngine(spec.load(), device=device, half=cuda if config.fp16 is None else config.fp16,
                         channels_last=cuda, compile=cuda if config.compile is None else config.compile)
    runs = [measure_whole_frames(engine, frames, config, progress),
            measure_pipeline(LocalBackend(engine), grid, spec.name, config, frames, "in process, tiles", None, progress)]
    del engine
    if cuda:
        torch.cuda.empty_cache()
    return runs


def _local_run(config: BenchConfig, style: str, grid: TileGrid, frames: list[np.ndarray], workers: int,
               devices: list[str], threads: int, progress: bool | None) -> Run:
    """``workers`` started as processes (broker included), measured, stopped."""
    from vrstyle.transport.cluster import LocalCluster

    extra = ["--warmup", f"{grid.in_shape[0]}x{grid.in_shape[1]}", "--halo", str(config.halo),
             "--overlap", str(config.overlap)]
    for option in ("fp16", "compile"):
        if getattr(config, option) is not None:
            extra.append(f"--{'' if getattr(config, option) else 'no-'}{option}")
    cpu = all(d == "cpu" for d in devices)
    log.info("starting %d worker(s) on %s", workers, ", ".join(devices))
    with LocalCluster([config.style], workers, devices=devices,
                      threads=threads if cpu else None, worker_args=extra) as cluster, cluster.client() as client:
        run = measure_pipeline(client, grid, style, config, frames, f"{workers} worker{'s' * (workers > 1)}",
                               workers, progress)
    return run


def _remote(config: BenchConfig, model: str) -> tuple[Any, int, str]:
    """(client, workers serving the style, the name they serve it by) for ``--broker``, once it answers."""
    from vrstyle.transport.client import TransportClient
    from vrstyle.transport.security import peer_keys

    keys = peer_keys(config.curve, config.key_name) if config.curve else None
    client = TransportClient(config.broker, keys=keys)
    try:
        workers = client.status()["workers"]
        style = next((name for name in (model, config.style) if any(name in w["styles"] for w in workers)), None)
        if style is None:
            served = sorted({name for worker in workers for name in worker["styles"]})
            raise VrstyleError(f"no worker of the broker at {config.broker} serves style {config.style!r} "
                               f"(served: {', '.join(served) or 'nothing'})")
    except BaseException:
        client.close()
        raise
    return client, sum(style in w["styles"] for w in workers), style


def _quiet(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


# Reporting.


def environment(devices: list[str]) -> dict[str, Any]:
    """Machine, devices, library versions and git revision, for results people can trust later."""
    import zmq

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": sys.version.split()[0], "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "numpy": np.__version__, "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(), "git": git_revision(),
        "devices": sorted(set(devices)),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        info["torch"] = None
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str | None:
    """``git describe --always --dirty`` of the checkout this package runs from, if it is one."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def table(result: dict[str, Any]) -> str:
    """The readable summary: one row per run, rates, latency percentiles, stages, fallbacks, ratios."""
    config, grid = result["config"], result["grid"]
    height, width = config["eye_shape"]
    lines = [f"{config['model']}: {config['eyes']} x {width}x{height} ({config['eye']}), "
             f"{grid['tiles_per_frame']} tiles of {grid['in_shape'][1]}x{grid['in_shape'][0]} px per frame "
             f"({grid['rows']}x{grid['cols']} per eye), {result['sweep'][0]['frames'] if result['sweep'] else 0} "
             f"frames, source {config['source_name']}", ""]
    header = ["run", "frames/s", "tiles/s", "MP/s", "p50 ms", "p95 ms", "p99 ms"] + [f"{s} ms" for s in STAGES] + \
             ["fallback", "vs tiles", "scaling"]
    rows = [header]
    for row in result["baselines"] + result["sweep"]:
        latency = row["latency_s"]
        rows.append([row["label"], f"{row['frames_per_s']:.2f}", f"{row['tiles_per_s']:.1f}",
                     f"{row['megapixels_per_s']:.2f}"] + [f"{1e3 * latency[p]:.1f}" for p in ("p50", "p95", "p99")]
                    + [f"{1e3 * row['stages_mean_s'][s]:.1f}" for s in STAGES]
                    + [str(row.get("fallback_tiles", 0)), _ratio(row.get("vs_in_process_tiles")),
                       _ratio(row.get("scaling_efficiency"), percent=True)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for k, r in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     + " |")
        if k == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    ratios = result["ratios"]
    if ratios["tiling_cost"] is not None:
        lines += ["", f"tiling cost (whole eyes / tiles, in process): {ratios['tiling_cost']:.2f}x throughput"]
    if ratios["transport_cost"] is not None:
        lines.append(f"transport cost (in-process tiles / {ratios['transport_cost_workers']} worker(s) through the "
                     f"broker): {ratios['transport_cost']:.2f}x throughput")
    return "\n".join(lines)


def _ratio(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.0f}%" if percent else f"{value:.2f}x"


def write_outputs(result: dict[str, Any], out: Path, name: str = settings.BENCH_NAME) -> list[Path]:
    """``NAME.json`` (everything), ``NAME.md`` (command and table) and ``NAME.png`` (plots) in ``out``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VrstyleError(f"cannot create {out}: {exc.strerror}") from None
    paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"]
    paths[0].write_text(json.dumps(result, indent=1) + "\n")
    paths[1].write_text(f"# Tile throughput\n\nCommand: `{result['command']}`\n\n{table(result)}\n")
    plot(result, paths[2])
    return paths


def plot(result: dict[str, Any], path: Path) -> None:
    """Latency histograms of every run, and throughput against worker count with the ideal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    runs = result["baselines"] + result["sweep"]
    latencies = [[1e3 * r["latency_s"] for r in run["records"]] for run in runs]
    bins = np.histogram_bin_edges(np.concatenate(latencies), bins=30) if any(latencies) else 10
    for run, values in zip(runs, latencies):
        left.hist(values, bins=bins, alpha=0.55, label=run["label"])
    left.set_xlabel("frame latency, ms (submit to stitched)")
    left.set_ylabel("frames")
    left.set_title("Latency")
    left.legend(fontsize=8)
    sweep = [run for run in result["sweep"] if run["workers"]]
    if sweep:
        counts = [run["workers"] for run in sweep]
        rates = [run["megapixels_per_s"] for run in sweep]
        right.plot(counts, rates, "o-", label="through the broker")
        right.plot(counts, [rates[0] * c / counts[0] for c in counts], "--", color="grey", label="linear scaling")
        for run, style in zip(result["baselines"], (":", "-.")):
            right.axhline(run["megapixels_per_s"], linestyle=style, color="black", label=run["label"])
        right.set_xticks(counts)
        right.set_ylim(bottom=0)
    right.set_xlabel("workers")
    right.set_ylabel("eye megapixels / s")
    right.set_title("Throughput")
    right.legend(fontsize=8)
    config = result["config"]
    fig.suptitle(f"{config['model']}, {config['eyes']} x {config['eye_shape'][1]}x{config['eye_shape'][0]}, "
                 f"{result['environment']['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
