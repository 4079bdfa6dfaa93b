"""How close tiled stylisation comes to whole-image stylisation, by halo, overlap and statistics.

For each halo and overlap, a photo is stylised tile by tile (a) with the frame's shared
normalisation statistics and (b) with each tile's own InstanceNorm statistics, and compared
(PSNR, uint8) with the whole image stylised in one pass with the shared statistics.

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
from vrstyle.stylize import measure_stats, stylize_image, stylize_untiled

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
    for halo in HALOS:
        for overlap in OVERLAPS:
            grid = tiles.plan_grid(height, width, args.tile, halo, overlap)
            stats = measure_stats(engine, photo, grid)
            whole = stylize_untiled(engine, photo, grid, stats)
            shared = stylize_image(engine, photo, grid, shared_stats=True)
            naive = stylize_image(engine, photo, grid, shared_stats=False)
            rows.append({"halo": halo, "overlap": overlap, "tiles": len(grid),
                         "psnr_shared": psnr(shared, whole), "psnr_per_tile": psnr(naive, whole),
                         "max_abs_shared": int(np.abs(shared.astype(int) - whole).max())})
            print(rows[-1], flush=True)
            if (halo, overlap) in ((0, 0), (56, 16)):
                y, x = grid.core_h - 96, grid.core_w - 96  # around the first tile corner
                crops[(halo, overlap)] = [im[y:y + 192, x:x + 192] for im in (whole, shared, naive)]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/seams.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v)
    meta = {"command": command, "style": args.style, "image": [height, width], "tile": args.tile,
            "torch": torch.__version__, "device": "cpu", "seconds": round(time.perf_counter() - start, 1)}
    out.with_suffix(".json").write_text(json.dumps({**meta, "results": rows}, indent=2))
    write_table(out.with_suffix(".md"), rows, meta)
    plot(out.with_suffix(".png"), rows, crops)


def write_table(path: Path, rows: list[dict], meta: dict) -> None:
    def cell(value: float) -> str:
        return "identical" if value >= IDENTICAL_DB else f"{value:.1f}"

    lines = [
        "# Tiled vs whole-image stylisation (PSNR, dB)",
        "",
        f"`{meta['command']}`: {meta['style']} on a {meta['image'][1]}x{meta['image'][0]} photo "
        f"(Kodak 1), tiles of at most {meta['tile']} px, fp32 on the CPU, torch {meta['torch']}. "
        "Reference: the whole image stylised in one pass with the frame's shared statistics. "
        "'shared': every tile normalised with those statistics; 'per tile': each tile's own "
        "InstanceNorm statistics.",
        "",
        "| halo | overlap | tiles | shared | per tile | shared max abs error |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['halo']} | {r['overlap']} | {r['tiles']} | {cell(r['psnr_shared'])} | "
                     f"{cell(r['psnr_per_tile'])} | {r['max_abs_shared']} |")
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
        ax.plot([r["halo"] for r in sel], [r["psnr_per_tile"] for r in sel], "--x", color=colour,
                label=f"per-tile statistics, overlap {overlap}")
    ax.set_xlabel("halo (px)")
    ax.set_ylabel("PSNR vs whole image (dB, capped at 60)")
    ax.set_xticks(HALOS)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    titles = ("whole image", "tiled, shared statistics", "tiled, per-tile statistics")
    for row, (key, images) in enumerate(sorted(crops.items())):
        for col, (image, title) in enumerate(zip(images, titles)):
            sub = fig.add_subplot(2, 6, 7 + row * 3 + col)
            sub.imshow(image)
            sub.set_title(f"{title}\nhalo {key[0]}, overlap {key[1]}", fontsize=7)
            sub.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
