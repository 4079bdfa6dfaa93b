"""Evaluation results as files: JSON (every number), a markdown table with its command, a PNG."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from vrstyle.train.evaluate import Report


def table(reports: list[Report]) -> str:
    """The comparison table in markdown."""
    lines = ["| model | PSNR dB | SSIM | VGG dist. | file KB | float MAC/px | int8 MAC/px | ±1-weight MAC/px "
             "| binary op/px | CPU s/frame | popcount s/frame |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        c = r.cost

        def k(value: float) -> str:
            return f"{value / 1000:.1f} K" if value else "0"

        def s(value: float | None) -> str:
            return f"{value:.2f}" if value is not None else "-"

        fidelity = "reference" if r.psnr == float("inf") else f"{r.psnr:.2f}"
        lines.append(f"| {r.name} | {fidelity} | {r.ssim:.3f} | {r.vgg_distance:.3f} | {r.file_bytes / 1000:.0f} "
                     f"| {k(c['float_macs'])} | {k(c['int8_macs'])} | {k(c['binary_weight_macs'])} "
                     f"| {k(c['binary_ops'])} | {s(r.cpu_seconds_per_frame)} | {s(r.popcount_seconds_per_frame)} |")
    return "\n".join(lines)


def _finite(value):
    """JSON has no infinity: a model identical to the teacher gets ``psnr: null``."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and value == float("inf") else value


def write_report(out: Path, reports: list[Report], grid: list[tuple[str, np.ndarray]], style: str,
                 sets: tuple[str, ...], limit: int | None, command: str, threads: int) -> None:
    """Write ``out.json``, ``out.md`` and ``out.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    photos = ", ".join(f"{name} ({'first ' + str(limit) if limit else 'all'})" for name in sets)
    machine = f"{platform.machine()} CPU, {threads} torch thread(s)"
    out.with_suffix(".json").write_text(json.dumps(
        {"style": style, "sets": list(sets), "limit": limit, "command": command, "machine": machine,
         "models": [_finite(r.as_dict()) for r in reports]}, indent=2) + "\n")
    text = [f"# Students vs the {style} teacher", "",
            f"Photos: {photos}, full size, each network with its own per-image statistics; "
            "PSNR/SSIM/VGG distance (relu3_1, relative squared error) against the teacher's uint8 output. "
            f"Arithmetic per output pixel. CPU speed: one 768x512 frame, {machine}, on a shared machine "
            "(other jobs running), so compare within this table only.", "",
            table(reports), "", "Command:", "", "```", command, "```", ""]
    out.with_suffix(".md").write_text("\n".join(text))

    figure = plt.figure(figsize=(3.2 * len(grid), 3.2 * 2.1))
    axis = figure.add_subplot(2, 1, 1)
    for r in (r for r in reports if r.psnr != float("inf")):
        axis.scatter(r.file_bytes / 1000, r.psnr, s=40)
        axis.annotate(r.name, (r.file_bytes / 1000, r.psnr), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("model file size (KB, log scale)")
    axis.set_ylabel("PSNR vs teacher (dB)")
    axis.set_title(f"{style}: fidelity to the teacher against file size")
    axis.grid(True, alpha=0.3)
    for index, (label, image) in enumerate(grid):
        ax = figure.add_subplot(2, len(grid), len(grid) + index + 1)
        ax.imshow(image)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(out.with_suffix(".png"), dpi=90)
    plt.close(figure)
