"""How close tiled stylisation comes to the plain network, by halo, overlap and statistics.

The reference is the plain network run once on the bare photo (its own statistics). For each
halo and overlap the photo is stylised tile by tile with those statistics, (a) with the
tiles' bounds (every layer reflects at the image's border, as the plain network does) and
(b) without them (the margin reflected once, before the network), and (c) with each tile's
own InstanceNorm statistics; all compared in PSNR (uint8). Then the statistics themselves: the
sample of tiles against the exact layer-by-layer passes, with their times.

    python benchmarks/seams.py --style candy/teacher --tile 256 --out benchmarks/results/seams
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import tiles
from vrstyle.models import StyleEngine, resolve_model
from vrstyle.models.registry import shared_data_dir
from vrstyle.stylize import exact_stats, measure_stats, stylize_image, stylize_untiled

HALOS = (0, 16, 32, 56)
OVERLAPS = (0, 16, 32)
IDENTICAL_DB = 99.0
"""PSNR reported for bit-identical images (the true value is infinite)."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return IDENTICAL_DB if mse == 0 else float(10 * np.log10(255**2 / mse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--style", default="candy/teacher")
    parser.add_argument("--photo", help="image to stylise (default: Kodak 1 from the shared data, 1024x768)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--out", default="benchmarks/results/seams", help="output path prefix")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    if args.photo:
        photo = np.asarray(Image.open(args.photo).convert("RGB"))
    else:
        source = Image.open(shared_data_dir() / "photos" / "kodak24" / "kodim01.png").convert("RGB")
        photo = np.asarray(source.resize((1024, 768), Image.LANCZOS))
    engine = StyleEngine(resolve_model(args.style).load())
    height, width = photo.shape[:2]
    rows, crops = [], {}
    start = time.perf_counter()
    whole = stylize_untiled(engine, photo)
    stats = engine.measure(photo[None], margin=0)[1:].astype(np.float32)  # the plain network's own
    for halo in HALOS:
        for overlap in OVERLAPS:
            grid = tiles.plan_grid(height, width, args.tile, halo, overlap)
            pieces = tiles.cut(photo, grid)
            bounded = tiles.stitch(engine.stylize(pieces, stats, grid.halo, grid.bounds()), grid)[0]
            margin_only = tiles.stitch(engine.stylize(pieces, stats, grid.halo), grid)[0]
            naive = stylize_image(engine, photo, grid, shared_stats=False)
            rows.append({"halo": grid.halo, "overlap": overlap, "tiles": len(grid),
                         "psnr_shared": psnr(bounded, whole), "psnr_margin_only": psnr(margin_only, whole),
                         "psnr_per_tile": psnr(naive, whole),
                         "max_abs_shared": int(np.abs(bounded.astype(int) - whole).max()),
                         "max_abs_margin_only": int(np.abs(margin_only.astype(int) - whole).max())})
            print(rows[-1], flush=True)
            if (halo, overlap) == (0, 0):  # around the first tile corner: seams
                y, x = grid.core_h - 96, grid.core_w - 96
                crops[f"tile corner, halo {halo}, overlap {overlap}"] = [
                    (f"{title}", im[y:y + 192, x:x + 192]) for title, im in
                    (("plain network", whole), ("tiled, shared statistics", bounded), ("tiled, per-tile", naive))]
            if (halo, overlap) == (56, 16):  # the image's top left corner: borders
                crops[f"image corner, halo {halo}, overlap {overlap}"] = [
                    (title, im[:96, :96]) for title, im in
                    (("plain network", whole), ("tiled, shared, bounds", bounded),
                     ("tiled, shared, margin only", margin_only))]
    statistics = []
    grid = tiles.plan_grid(height, width, args.tile, 56, 16)
    began = time.perf_counter()
    sample = measure_stats(engine, photo, grid)
    sample_s = time.perf_counter() - began
    began = time.perf_counter()
    exact = exact_stats(engine, photo, grid, sample)
    for name, given, seconds in (("sample of 8 tiles", sample, sample_s),
                                 ("exact, a pass per norm layer", exact, time.perf_counter() - began)):
        tiled = stylize_image(engine, photo, grid, stats=given)
        statistics.append({"statistics": name, "seconds": round(seconds, 1), "psnr": psnr(tiled, whole),
                           "max_abs": int(np.abs(tiled.astype(int) - whole).max())})
        print(statistics[-1], flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/seams.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v)
    meta = {"command": command, "style": args.style, "image": [height, width], "tile": args.tile,
            "torch": torch.__version__, "device": "cpu", "seconds": round(time.perf_counter() - start, 1)}
    out.with_suffix(".json").write_text(json.dumps({**meta, "results": rows, "statistics": statistics}, indent=2))
    write_table(out.with_suffix(".md"), rows, statistics, meta)
    plot(out.with_suffix(".png"), rows, crops)


def write_table(path: Path, rows: list[dict], statistics: list[dict], meta: dict) -> None:
    def cell(value: float) -> str:
        return "identical" if value >= IDENTICAL_DB else f"{value:.1f}"

    lines = [
        "# Tiled stylisation vs the plain network (PSNR, dB)",
        "",
        f"`{meta['command']}`: {meta['style']} on a {meta['image'][1]}x{meta['image'][0]} photo "
        f"(Kodak 1), tiles of at most {meta['tile']} px, fp32 on the CPU, torch {meta['torch']} "
        f"({meta['seconds']:.0f} s in all). Reference: the plain network run once on the bare photo, "
        "with its own statistics. 'shared': every tile normalised with those statistics, each layer "
        "reflecting at the image's border as the plain network does (the tiles' bounds); 'margin "
        "only': the same without bounds (the border reflected once, before the network: how tiles "
        "ran before); 'per tile': each tile's own InstanceNorm statistics. Halos are rounded up so "
        "that halo + overlap is a multiple of 4.",
        "",
        "| halo | overlap | tiles | shared | margin only | per tile | shared max abs | margin only max abs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['halo']} | {r['overlap']} | {r['tiles']} | {cell(r['psnr_shared'])} | "
                     f"{cell(r['psnr_margin_only'])} | {cell(r['psnr_per_tile'])} | {r['max_abs_shared']} | "
                     f"{r['max_abs_margin_only']} |")
    lines += ["", "Statistics measured from the tiles (halo 56, overlap 16, with bounds), against the plain "
              "network:", "", "| statistics | seconds | PSNR dB | max abs |", "|---|---:|---:|---:|"]
    for r in statistics:
        lines.append(f"| {r['statistics']} | {r['seconds']} | {cell(r['psnr'])} | {r['max_abs']} |")
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, rows: list[dict], crops: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 8))
    ax = fig.add_subplot(2, 1, 1)
    for overlap, colour in zip(OVERLAPS, ("C0", "C1", "C2")):
        sel = [r for r in rows if r["overlap"] == overlap]
        ax.plot([r["halo"] for r in sel], [min(r["psnr_shared"], 60) for r in sel], "-o", color=colour,
                label=f"shared statistics, overlap {overlap}")
        ax.plot([r["halo"] for r in sel], [min(r["psnr_margin_only"], 60) for r in sel], ":s", color=colour,
                label=f"shared, margin only (no bounds), overlap {overlap}")
        ax.plot([r["halo"] for r in sel], [r["psnr_per_tile"] for r in sel], "--x", color=colour,
                label=f"per-tile statistics, overlap {overlap}")
    ax.set_xlabel("halo (px)")
    ax.set_ylabel("PSNR vs the plain network (dB, capped at 60)")
    ax.set_xticks(HALOS)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    for row, (key, images) in enumerate(crops.items()):
        for col, (title, image) in enumerate(images):
            sub = fig.add_subplot(2, 6, 7 + row * 3 + col)
            sub.imshow(image, interpolation="nearest")
            sub.set_title(f"{title}\n{key}", fontsize=7)
            sub.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
