"""Reporting: the machine a result came from, and the result as a table, JSON, Markdown and plots."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vrstyle import settings
from vrstyle.bench.config import STAGES
from vrstyle.commands._common import plural
from vrstyle.errors import VrstyleError


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
             f"{plural(grid['tiles_per_frame'], 'tile')} of {grid['in_shape'][1]}x{grid['in_shape'][0]} px per frame "
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
        lines += ["", f"tiling cost: in process, whole eyes run at {ratios['tiling_cost']:.2f}x the throughput of "
                      "the same eyes in tiles"]
    if ratios["transport_cost"] is not None:
        lines.append(f"transport cost: tiles in process run at {ratios['transport_cost']:.2f}x the throughput of "
                     f"{plural(ratios['transport_cost_workers'], 'worker')} through the broker (above 1: the broker "
                     "costs throughput)")
    grid = result["grid"]
    if "foveated_pixels_computed_per_eye_pixel" in grid:
        lines.append(f"foveation: tile scales per eye {grid['scales']}; the network reads "
                     f"{grid['foveated_pixels_computed_per_eye_pixel']:.2f} px per eye pixel, "
                     f"{grid['pixels_computed_per_eye_pixel']:.2f} without")
    for row in result["sweep"]:
        if row.get("vs_unfoveated") is not None:
            lines.append(f"foveation gain: {row['label']} serves {row['vs_unfoveated']:.2f}x the eye megapixels/s "
                         "of the same workers without foveation")
        if row.get("vs_memcpy") is not None:
            lines.append(f"data path: {row['label']} at {row['vs_memcpy']:.3f}x the frame rate of a memcpy of the "
                         "frame in and out")
        if row.get("skipped"):
            lines.append(f"stereo consistency: {row['label']} left out {row['skipped'] / row['tiles']:.0%} of the "
                         "tiles (the left eye's strokes cover them)")
        wire = row.get("wire_mb_per_frame")
        if wire and any(wire.values()):
            lines.append(f"pixels as messages: {row['label']}: {wire['pixel_bytes_sent']:.2f} MB out and "
                         f"{wire['pixel_bytes_received']:.2f} MB back per frame")
    return "\n".join(lines)


def _ratio(value: float | None, percent: bool = False) -> str:
    """A table cell: "-" where a ratio has no base."""
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
    end = "stitched" if result["config"].get("stitch", True) else "tiles back"
    left.set_xlabel(f"frame latency, ms (submit to {end})")
    left.set_ylabel("frames")
    left.set_title("Latency")
    left.legend(fontsize=8)
    foveated = [run for run in result["sweep"] if run["workers"] and run.get("foveated")]
    if foveated:
        right.plot([run["workers"] for run in foveated], [run["megapixels_per_s"] for run in foveated], "s-",
                   label="foveated, through the broker")
    sweep = [run for run in result["sweep"] if run["workers"] and not run.get("foveated")]
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
