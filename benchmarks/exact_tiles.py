"""Tiled ``vrstyle stylize`` against the plain network on the bare image: every teacher, tile size and photo.

Each photo is stylised as ``vrstyle stylize --tile T`` does (default halo, overlap and memory
plan, exact statistics) and compared (PSNR, max abs error over every pixel, and over the
outer 16 px alone) with the teacher run once on the whole bare image, as pytorch/examples
runs it. The sampled statistics (``--stats sample``) get a row per photo at one tile size.

    python benchmarks/exact_tiles.py --out benchmarks/results/exact-tiles
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vrstyle import settings
from vrstyle.images import read_rgb
from vrstyle.models import StyleEngine, resolve_model
from vrstyle.models.registry import shared_data_dir
from vrstyle.stylize import plan_image, stylize_image, stylize_untiled

STYLES = ("candy", "mosaic", "rain_princess", "udnie", "pointilism")
TILES = (128, 256, 512, 1024)
PHOTOS = ("content/golden_gate.jpg", "content/hoovertowernight.jpg", "photos/kodak24/kodim04.png")
BORDER = 16
IDENTICAL_DB = 99.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return IDENTICAL_DB if mse == 0 else float(10 * np.log10(255**2 / mse))


def border(image: np.ndarray) -> np.ndarray:
    """The outer ``BORDER`` px of an image, as one array."""
    inner = np.ones(image.shape[:2], bool)
    inner[BORDER:-BORDER, BORDER:-BORDER] = False
    return image[inner]


def compare(tiled: np.ndarray, whole: np.ndarray) -> dict:
    return {"psnr": psnr(tiled, whole), "max_abs": int(np.abs(tiled.astype(int) - whole).max()),
            "border_psnr": psnr(border(tiled), border(whole)),
            "border_max_abs": int(np.abs(border(tiled).astype(int) - border(whole)).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--styles", nargs="+", default=list(STYLES))
    parser.add_argument("--tiles", nargs="+", type=int, default=list(TILES))
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), help="paths under the shared data folder")
    parser.add_argument("--sample-tile", type=int, default=256, help="tile size of the sampled-statistics rows")
    parser.add_argument("--out", default="benchmarks/results/exact-tiles", help="output path prefix")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    data = shared_data_dir()
    rows = []
    start = time.perf_counter()
    for style in args.styles:
        engine = StyleEngine(resolve_model(f"{style}/teacher").load())
        for name in args.photos:
            photo = read_rgb(data / name)
            height, width = photo.shape[:2]
            began = time.perf_counter()
            whole = stylize_untiled(engine, photo)
            whole_s = time.perf_counter() - began
            runs = [(tile, True) for tile in args.tiles] + [(args.sample_tile, False)]
            for tile, exact in runs:
                plan = plan_image(height, width, settings.STYLIZE_MEMORY_GB * 1e9, tile)
                began = time.perf_counter()
                tiled = stylize_image(engine, photo, plan.grid, batch=plan.batch, stats_tiles=plan.stats_tiles,
                                      exact=exact)
                rows.append({"style": style, "photo": Path(name).name, "size": [width, height], "tile": tile,
                             "tiles": len(plan.grid), "stats": "exact" if exact else "sample",
                             "seconds": round(time.perf_counter() - began, 2), "whole_seconds": round(whole_s, 2),
                             **compare(tiled, whole)})
                print(rows[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = ("python benchmarks/exact_tiles.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()))
    meta = {"command": command, "torch": torch.__version__, "device": "cpu", "threads": torch.get_num_threads(),
            "seconds": round(time.perf_counter() - start, 1)}
    out.with_suffix(".json").write_text(json.dumps({**meta, "results": rows}, indent=2))
    write_table(out.with_suffix(".md"), rows, meta)


def write_table(path: Path, rows: list[dict], meta: dict) -> None:
    def cell(value: float) -> str:
        return "identical" if value >= IDENTICAL_DB else f"{value:.1f}"

    exact = [r for r in rows if r["stats"] == "exact" and r["tiles"] > 1]
    lines = [
        "# Tiled stylize vs the plain network on the bare image",
        "",
        f"`{meta['command']}` ({meta['seconds']:.0f} s, CPU, {meta['threads']} torch threads, torch "
        f"{meta['torch']}). Each teacher run once on the whole bare image is the reference; the tiled "
        f"result is `vrstyle stylize --tile T` with the default halo ({settings.HALO}) and overlap "
        f"({settings.OVERLAP}). 'border': the outer {BORDER} px only. Seconds: the tiled run, and the "
        "whole image in one pass beside it (same process, same machine).",
        "",
        f"Over the {len(exact)} tiled runs with exact statistics: PSNR at least "
        f"{cell(min(r['psnr'] for r in exact)) if exact else '-'} dB; max abs error at most "
        f"{max((r['max_abs'] for r in exact), default='-')} (grey levels of 255), borders included.",
        "",
        "| teacher | photo | tile | tiles | statistics | PSNR dB | max abs | border PSNR | border max abs | "
        "tiled s | whole s |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['style']} | {r['photo']} {r['size'][0]}x{r['size'][1]} | {r['tile']} | {r['tiles']} | "
                     f"{r['stats']} | {cell(r['psnr'])} | {r['max_abs']} | {cell(r['border_psnr'])} | "
                     f"{r['border_max_abs']} | {r['seconds']} | {r['whole_seconds']} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
