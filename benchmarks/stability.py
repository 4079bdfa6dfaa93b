"""How steady a style network is: output change under tiny input noise and between tilings.

    python benchmarks/stability.py candy/teacher candy/binary --limit 4 --out benchmarks/results/stability-candy

For each model, on held-out photos (Kodak24 and BSDS500 test, full size):

* **noise**: PSNR between the output for a photo and for the same photo with uniform
  {-1, 0, +1} grey-level noise added (input PSNR about 50 dB), each with its own statistics;
  a network that re-rolls its strokes on such changes flickers in a headset;
* **tiling**: PSNR between the photo stylised with 256 px and with 512 px tiles, statistics
  measured over every tile both times, so only the order of floating-point sums differs.

Targets for the shipped students (students issue): noise >= 30 dB, tiling >= 40 dB.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import tiles
from vrstyle import settings
from vrstyle.models import resolve_model
from vrstyle.models.engine import StyleEngine
from vrstyle.stylize import stylize_image
from vrstyle.train import losses
from vrstyle.train.data import EVAL_SETS, photo_paths
from vrstyle.train.evaluate import eval_photo


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 images (:func:`vrstyle.train.losses.psnr`)."""
    return losses.psnr(torch.as_tensor(np.array(a)), torch.as_tensor(np.array(b)))  # copies: arrays may be read-only


def tiled(engine: StyleEngine, photo: np.ndarray, tile: int) -> np.ndarray:
    grid = tiles.plan_grid(*photo.shape[:2], tile=tile, halo=settings.HALO, overlap=settings.OVERLAP)
    return stylize_image(engine, photo, grid, stats_tiles=len(grid))


def stability(engine: StyleEngine, photo: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    noisy = np.clip(photo.astype(np.int16) + rng.integers(-1, 2, photo.shape), 0, 255).astype(np.uint8)
    clean, shaken = engine.stylize(photo[None], None)[0], engine.stylize(noisy[None], None)[0]
    return {"input_psnr": psnr(photo, noisy), "noise_psnr": psnr(clean, shaken),
            "tiling_psnr": psnr(tiled(engine, photo, 256), tiled(engine, photo, 512))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model names or files")
    parser.add_argument("--limit", type=int, default=4, help="photos per held-out set (default 4)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="output prefix (.json, .md)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = photo_paths(EVAL_SETS, args.limit)
    results = {}
    for name in args.models:
        engine = StyleEngine(resolve_model(name).load())
        rng = np.random.default_rng(0)
        rows = [stability(engine, eval_photo(p), rng) for p in tqdm(photos, desc=name, unit="photo")]
        results[name] = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
        results[name]["per_photo"] = {p.name: r for p, r in zip(photos, rows)}
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "photos": [p.name for p in photos],
                                                    "models": results}, indent=2) + "\n")
    lines = ["# Stability: output PSNR under ±1 input noise and between 256 and 512 px tiles", "",
             f"Command: `{command}`", "",
             f"{len(photos)} held-out photos ({', '.join(EVAL_SETS)}, first {args.limit} of each, full size). "
             "Higher is steadier; targets for students: noise >= 30 dB, tiling >= 40 dB.", "",
             "| model | noise PSNR (dB) | tiling 256 vs 512 PSNR (dB) |", "|---|---|---|"]
    lines += [f"| {name} | {r['noise_psnr']:.1f} | {r['tiling_psnr']:.1f} |" for name, r in results.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
