"""Measuring: frames through each configuration, collected in order, summarised into the result.

Every frame is collected, so every tile is accounted for: stylised, fallback or left out.

Length: about 420 lines: the run loop, its baselines and its summary read best together.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

import tiles
from tiles import TileGrid
from vrstyle import settings
from vrstyle.bench.config import STAGES, WIRE_COUNTERS, BenchConfig, check, worker_devices
from vrstyle.bench.report import environment
from vrstyle.commands._common import plural
from vrstyle.errors import VrstyleError
from vrstyle.normstats import combine_moments, moments_to_stats
from vrstyle.progress import progress_bar
from vrstyle.timing import summarize

log = logging.getLogger(__name__)

MEMCPY = "memcpy of the frame, in and out"



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


def load_frames(config: BenchConfig, count: int) -> tuple[str, list[np.ndarray], list | None]:
    """(source name, distinct frames to cycle through at exactly the configured eye size, each
    frame's views with depth where the source has them)."""
    count = min(count, settings.BENCH_SYNTHETIC_FRAMES)
    if config.source == ["synthetic"]:
        return "synthetic", synthetic_frames(config.eyes, config.eye_shape, count), None
    if config.source == ["scene"]:
        from vrstyle.sources import scene_frames

        frames, views = scene_frames(config.eye_shape, count)
        return "demo scene", [frame[:config.eyes] for frame in frames], views
    from vrstyle.sources import PhotoFolder, cover, open_source

    with open_source(config.source, largest=config.eye_shape) as source:
        photos = len(source.paths) if isinstance(source, PhotoFolder) else 1
        frames = []
        for index in range(min(count, photos)):
            stereo = source.frame(index * getattr(source, "seconds", 0.0))
            frames.append(np.stack([cover(view, config.eye_shape) for view in stereo[:config.eyes]]))
    return source.name, frames, None


@dataclass
class Run:
    """One configuration measured: per-frame records and the wall time of the timed frames."""

    label: str
    workers: int | None
    records: list[dict[str, Any]]
    elapsed_s: float
    counters: dict[str, int] = field(default_factory=dict)
    foveated: bool = False


def frame_record(index: int, result, tiles_per_frame: int, in_process: bool = False) -> dict[str, Any]:
    """What the JSON keeps of one frame: its latency, its stages and what became of its tiles.

    ``in_process``: every request ran inside ``send``; their inference is taken out of it, so
    the stages still add up to the latency.
    """
    timings = result.timings
    stages = timings.critical_path()
    if in_process:
        inference = timings.inference
        stages.update(send=max(timings.send - inference, 0.0), queue=0.0, inference=inference, transfer=0.0)
    fallback = dict(Counter(f.reason for f in result.fallback.values()))
    skipped = 0 if result.skipped is None else len(result.skipped)
    return {"frame": index, "latency_s": timings.total + timings.stitch, "total_s": timings.total,
            "stages_s": stages, "request_means_s": asdict(timings.requests), "tiles": tiles_per_frame,
            "stylised": tiles_per_frame - len(result.fallback) - skipped, "skipped": skipped, "fallback": fallback}


def stream(pipeline, frames: list[np.ndarray], count: int, rate: float | None, bar: tqdm | None,
           first_index: int = 0, in_process: bool = False, stitch: bool = True,
           skips: list[np.ndarray] | None = None) -> tuple[list[dict[str, Any]], float]:
    """Push ``count`` frames through ``pipeline`` and collect every one, in order (stitched on
    the CPU if ``stitch``; each frame's ``skips`` left out).

    Closed loop (``rate`` None): up to ``pipeline.depth`` frames in flight. Open loop: frame
    ``i`` is submitted at ``i / rate`` s (later if ``depth`` frames are still out).

    Returns:
        (one :func:`frame_record` per frame, seconds from the first submission to the last result)
    """
    tiles_per_frame = pipeline.eyes * len(pipeline.grid)
    records: list[dict[str, Any]] = []
    order: list[tuple[int, int]] = []  # (frame id, index) in flight, oldest first

    def collect() -> None:
        frame_id, index = order.pop(0)
        result = pipeline.result(frame_id)
        if stitch:
            result.stitched()
        records.append(frame_record(index, result, tiles_per_frame, in_process))
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
        index = (first_index + i) % len(frames)
        order.append((pipeline.submit(frames[index], skip=None if skips is None else skips[index]), first_index + i))
        while order and pipeline.ready(order[0][0]):
            collect()
    while order:
        collect()
    return records, time.monotonic() - start


def measure_pipeline(backend, grid: TileGrid, style: str, config: BenchConfig, frames: list[np.ndarray],
                     label: str, workers: int | None, progress: bool | None,
                     rings: tuple[float, ...] | None = None, skips: list[np.ndarray] | None = None) -> Run:
    """Warm-up frames, then the timed frames, through a fresh :class:`~vrstyle.pipeline.FramePipeline`
    (foveated with ``rings``); the backend stays open (its owner closes it)."""
    from vrstyle.pipeline import FramePipeline
    from vrstyle.transport.local import LocalBackend

    in_process = isinstance(backend, LocalBackend)
    deadline = None if config.deadline_ms is None else config.deadline_ms / 1000
    pipeline = FramePipeline(backend, grid, style, eyes=config.eyes, deadline_s=deadline,
                             request_tiles=config.request_tiles, depth=config.depth, rings=rings)
    with progress_bar(total=config.warmup + config.frames, progress=progress, desc=label, unit="frame") as bar:
        if config.warmup:
            stream(pipeline, frames, config.warmup, config.rate, bar, stitch=config.stitch, skips=skips)
        before = dict(getattr(backend, "counters", {}))
        records, elapsed = stream(pipeline, frames, config.frames, config.rate, bar, config.warmup, in_process,
                                  config.stitch, skips)
    wire = {name: backend.counters[name] - before[name] for name in WIRE_COUNTERS if name in before}  # timed only
    return Run(label, workers, records, elapsed, {**pipeline.counters, **wire}, foveated=rings is not None)


def measure_whole_frames(engine, frames: list[np.ndarray], config: BenchConfig, progress: bool | None) -> Run:
    """The same model on whole eyes in this process, both eyes in one batch, with given statistics."""
    _, moments = engine.stylize_and_measure(frames[0], None, 0, 0)
    stats = moments_to_stats(combine_moments(moments)).astype(np.float32)
    return _timed("in process, whole eyes", lambda frame: engine.stylize_and_measure(frame, stats, 0, 0), frames,
                  config, progress, stage="inference", tiles=config.eyes)


def measure_memcpy(frames: list[np.ndarray], config: BenchConfig, progress: bool | None) -> Run:
    """The floor of any data path, in this process: each frame's eyes copied once in and an RGB
    frame of the same size copied once out (what the identity workers move, less the halos)."""
    inbox = np.empty_like(frames[0])
    outbox = np.empty(frames[0].shape[:3] + (3,), np.uint8)

    def copy(frame: np.ndarray) -> None:
        np.copyto(inbox, frame)
        np.copyto(outbox, frame[..., :3])

    return _timed(MEMCPY, copy, frames, config, progress, stage="transfer", tiles=0)


def _timed(label: str, work, frames: list[np.ndarray], config: BenchConfig, progress: bool | None, stage: str,
           tiles: int) -> Run:
    """``work`` on each frame in this process, the warm-up untimed; its time is one stage."""
    records = []
    start = time.monotonic()
    for i in progress_bar(range(config.warmup + config.frames), progress, desc=label, unit="frame"):
        if i == config.warmup:
            start = time.monotonic()
        began = time.monotonic()
        work(frames[i % len(frames)])
        took = time.monotonic() - began
        if i >= config.warmup:
            records.append({"frame": i, "latency_s": took, "total_s": took,
                            "stages_s": {name: took if name == stage else 0.0 for name in STAGES},
                            "tiles": tiles, "stylised": tiles, "fallback": {}})
    return Run(label, None, records, time.monotonic() - start)


def summarize_run(run: Run, config: BenchConfig) -> dict[str, Any]:
    """Rates, latency percentiles, stage means and tile accounting of one run."""
    frames = len(run.records)
    rate = (lambda amount: amount / run.elapsed_s) if run.elapsed_s > 0 else (lambda amount: float("nan"))
    eye_pixels = config.eyes * config.eye_shape[0] * config.eye_shape[1]
    fallback = dict(sum((Counter(record["fallback"]) for record in run.records), Counter()))
    tiles_done = sum(r["tiles"] for r in run.records)
    return {
        "label": run.label, "workers": run.workers, "foveated": run.foveated, "frames": frames,
        "elapsed_s": run.elapsed_s,
        "frames_per_s": rate(frames), "tiles_per_s": rate(tiles_done), "megapixels_per_s": rate(frames * eye_pixels / 1e6),
        "latency_s": summarize(r["latency_s"] for r in run.records),
        "stages_mean_s": {stage: summarize(r["stages_s"][stage] for r in run.records)["mean"] for stage in STAGES},
        "tiles": tiles_done, "stylised": sum(r["stylised"] for r in run.records),
        "skipped": sum(r.get("skipped", 0) for r in run.records),
        "fallback": fallback, "fallback_tiles": sum(fallback.values()),
        "deadline_misses": (sum(bool(r["fallback"]) for r in run.records) if config.deadline_ms is not None else None),
        "counters": run.counters, "records": run.records,
        "wire_mb_per_frame": ({name: run.counters[name] / frames / 1e6 for name in WIRE_COUNTERS}
                              if frames and all(name in run.counters for name in WIRE_COUNTERS) else None),
    }


def run_benchmark(config: BenchConfig, progress: bool | None = None, command: str = "") -> dict[str, Any]:
    """Run every configuration and return the full result (what the JSON holds).

    Raises:
        VrstyleError: bad options, unknown styles, unreachable brokers, workers that fail to start.
    """
    grid = check(config)
    height, width = config.eye_shape
    if config.data_path:
        spec = None
        model = config.data_path
    else:
        from vrstyle.models import resolve_model

        spec = resolve_model(config.style)
        model = spec.name
    tiles_per_frame = config.eyes * len(grid)
    source_name, frames, views = load_frames(config, config.warmup + config.frames)
    skips = None
    if config.consistency == "stereo":
        from vrstyle.reproject import stereo_skip

        skips = [stereo_skip(grid, frame_views) for frame_views in views]
    count = max(config.workers)
    local_devices = [] if config.broker else worker_devices(config.devices, count)
    threads = config.threads or max(1, (os.cpu_count() or 1) // count)
    if spec is not None and not any(d.startswith("cuda") for d in local_devices + config.devices):
        import torch

        torch.set_num_threads(threads)
    log.info("%s: %s of %dx%d (%s), %s of %dx%d px per frame, source %s", model, plural(config.eyes, "eye"),
             config.eye_shape[1], config.eye_shape[0], config.eye, plural(tiles_per_frame, "tile"), grid.in_shape[1],
             grid.in_shape[0], source_name)
    # An unreachable broker fails here, before anything is measured.
    client, remote_workers, remote_style = _remote(config, model) if config.broker else (None, 0, "")
    runs: list[Run] = []
    baselines: list[Run] = []
    try:
        if spec is None:
            baselines = [measure_memcpy(frames, config, progress)]
        else:
            baselines = _baselines(config, spec, grid, frames, (local_devices or config.devices)[0], progress)
        if client is not None:
            label = f"broker, {plural(remote_workers, 'worker')}"
            for rings in _foveations(config):
                runs.append(measure_pipeline(client, grid, remote_style, config, frames, _label(label, rings),
                                             remote_workers, progress, rings, skips))
        else:
            for workers in config.workers:
                runs += _local_runs(config, model, grid, frames, workers, local_devices[:workers], threads, progress,
                                    skips)
    finally:
        if client is not None:
            client.close()
    result = {
        "command": command,
        "environment": environment(local_devices or config.devices),
        "config": {**asdict(config), "model": model, "threads": threads, "source_name": source_name},
        "grid": {"rows": grid.rows, "cols": grid.cols, "core": [grid.core_h, grid.core_w],
                 "in_shape": list(grid.in_shape), "out_shape": list(grid.out_shape), "tiles_per_eye": len(grid),
                 "tiles_per_frame": tiles_per_frame,
                 "pixels_computed_per_eye_pixel": len(grid) * grid.in_shape[0] * grid.in_shape[1] / (height * width),
                 **_foveated_grid(config, grid)},
        "baselines": [summarize_run(run, config) for run in baselines],
        "sweep": [summarize_run(run, config) for run in runs],
    }
    add_ratios(result)
    return result


def add_ratios(result: dict[str, Any]) -> None:
    """Throughput ratios side by side: tiling cost, transport cost, scaling efficiency."""
    base = {row["label"]: row["frames_per_s"] for row in result["baselines"]}
    whole, tiled = base.get("in process, whole eyes"), base.get("in process, tiles")
    memcpy = base.get(MEMCPY)
    sweep = result["sweep"]
    smallest = sweep[0] if sweep else None
    unfoveated = {row["workers"]: row for row in sweep if not row.get("foveated")}
    for row in sweep:
        row["vs_whole_eyes"] = row["frames_per_s"] / whole if whole else None
        row["vs_in_process_tiles"] = row["frames_per_s"] / tiled if tiled else None
        row["vs_memcpy"] = row["frames_per_s"] / memcpy if memcpy else None
        plain = unfoveated.get(row["workers"]) if row.get("foveated") else None
        row["vs_unfoveated"] = row["megapixels_per_s"] / plain["megapixels_per_s"] if plain else None
        if row.get("foveated"):
            row["scaling_efficiency"] = None
        elif smallest is not None and row["workers"] and smallest["workers"]:
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


def _foveations(config: BenchConfig) -> list[tuple[float, ...] | None]:
    """The rings of each run per worker count: unfoveated, then foveated if asked for."""
    return [None] + ([tuple(config.rings)] if config.foveation == "fixed" else [])


def _label(label: str, rings: tuple[float, ...] | None) -> str:
    return label if rings is None else f"{label}, foveated"


def _foveated_grid(config: BenchConfig, grid: TileGrid) -> dict[str, Any]:
    """With foveation: each tile's scale (eyes centred) and the network's input pixels per eye pixel."""
    if config.foveation == "off":
        return {}
    scales = tiles.tile_scales(grid, (grid.height / 2, grid.width / 2), config.rings)
    pixels = sum(math.prod(tiles.level_grid(grid, s).in_shape) for s in scales.tolist())
    return {"scales": scales.reshape(grid.rows, grid.cols).tolist(),
            "foveated_pixels_computed_per_eye_pixel": pixels / (grid.height * grid.width)}


def _local_runs(config: BenchConfig, style: str, grid: TileGrid, frames: list[np.ndarray], workers: int,
                devices: list[str], threads: int, progress: bool | None,
                skips: list[np.ndarray] | None = None) -> list[Run]:
    """``workers`` started as processes (broker included), measured (without and with foveation), stopped."""
    from vrstyle.transport.cluster import LocalCluster

    extra = [] if config.data_path else ["--warmup", f"{grid.in_shape[1]}x{grid.in_shape[0]}", "--halo",
                                         str(config.halo), "--overlap", str(config.overlap)]
    for option in ("fp16", "compile"):
        if getattr(config, option) is not None:
            extra.append(f"--{'' if getattr(config, option) else 'no-'}{option}")
    cpu = all(d == "cpu" for d in devices)
    log.info("starting %s on %s", plural(workers, "worker"), ", ".join(devices))
    with LocalCluster([config.data_path or config.style], workers, devices=devices,
                      threads=threads if cpu else None, worker_args=extra) as cluster, \
            cluster.client(**config.client_options()) as client:
        return [measure_pipeline(client, grid, style, config, frames, _label(plural(workers, "worker"), rings),
                                 workers, progress, rings, skips) for rings in _foveations(config)]


def _remote(config: BenchConfig, model: str) -> tuple[Any, int, str]:
    """(client, workers serving the style, the name they serve it by) for ``--broker``, once it answers."""
    from vrstyle.transport.client import TransportClient
    from vrstyle.transport.security import peer_keys

    keys = peer_keys(config.curve, config.key_name) if config.curve else None
    client = TransportClient(config.broker, keys=keys, **config.client_options())
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


