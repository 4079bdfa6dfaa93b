"""What foveation looks like and costs: each ring against the unfoveated output, per ring setting.

The demo scene is rendered at a headset's eye size (Quest 3 by default). Every tile is
stylised once at each scale (1, 1/2, 1/4) with the same statistics (the plain network's on the
eyes at half size, so the comparison is of resolution alone), and any ring setting is then the
stitch of the tiles at the scales its rings give them, exactly what the pipeline computes
with those statistics. Reported per setting: PSNR and SSIM against the unfoveated output in
each ring (pixels by the scale of the tile whose core holds them), and the network's input
pixels per eye pixel (its cost). The figure shows one eye with the rings, and 1:1 crops of the
1/2 and 1/4 rings unfoveated and foveated.

    python benchmarks/foveation.py --style candy/binary --out benchmarks/results/foveation
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

import tiles
from vrstyle import settings
from vrstyle.models import StyleEngine, resolve_model
from vrstyle.normstats import combine_moments, moments_to_stats
from vrstyle.progress import progress_bar
from vrstyle.train.losses import ssim

RING_SETTINGS = ((0.35, 0.7), (0.3, 0.6), (0.25, 0.5), (0.35,), (0.2, 0.4))
CHUNK = 4
"""Tiles per forward pass."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def render_eyes(eye_shape: tuple[int, int], seconds: float) -> np.ndarray:
    """The demo scene's stereo pair at ``seconds``, (2, H, W, 3) uint8 (headless GL)."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    from vrstyle.gl.context import HeadlessContext
    from vrstyle.sources import SceneSource

    with HeadlessContext() as _, SceneSource(eye_shape) as scene:
        return scene.frame(seconds)


def stylise_at(engine: StyleEngine, eyes: np.ndarray, grid: tiles.TileGrid, scale: int, stats: np.ndarray,
               bar) -> np.ndarray:
    """Every tile of both eyes at ``scale``, in its slot's corner: (2 * len(grid), out_h, out_w, 3)."""
    level = tiles.level_grid(grid, scale)
    cut = tiles.cut(tiles.downscale(eyes, scale), level)
    bounds = np.tile(level.bounds(), (len(eyes), 1))
    slots = np.zeros((len(cut),) + grid.out_shape + (3,), np.uint8)
    height, width = level.out_shape
    for first in range(0, len(cut), CHUNK):
        part = slice(first, first + CHUNK)
        slots[part, :height, :width] = engine.stylize(cut[part], stats, crop=level.halo, bounds=bounds[part])
        bar.update(min(CHUNK, len(cut) - first))
    return slots


def ring_map(grid: tiles.TileGrid, scales: np.ndarray) -> np.ndarray:
    """(H, W) scale of the tile whose core holds each pixel of one eye."""
    per_tile = scales.reshape(grid.rows, grid.cols)
    rows = np.minimum(np.arange(grid.height) // grid.core_h, grid.rows - 1)
    cols = np.minimum(np.arange(grid.width) // grid.core_w, grid.cols - 1)
    return per_tile[rows][:, cols]


def input_pixels(grid: tiles.TileGrid, scales: np.ndarray) -> int:
    return sum(np.prod(tiles.level_grid(grid, s).in_shape) for s in scales.tolist())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="candy/binary")
    parser.add_argument("--eye-size", default="quest3", help="a preset or WIDTHxHEIGHT")
    parser.add_argument("--seconds", type=float, default=4.0, help="demo scene time to render")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/foveation", help="output path prefix")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    if args.eye_size in settings.EYE_PRESETS:
        eye_shape = settings.EYE_PRESETS[args.eye_size]
    else:
        width, height = (int(v) for v in args.eye_size.split("x"))
        eye_shape = (height, width)
    eyes = render_eyes(eye_shape, args.seconds)
    engine = StyleEngine(resolve_model(args.style).load())
    grid = tiles.plan_grid(*eye_shape, settings.TILE, settings.HALO, settings.OVERLAP, settings.ALIGN,
                           core_align=settings.ALIGN * 4)
    started = time.perf_counter()
    half = tiles.downscale(eyes, 2)
    _, moments = engine.stylize_and_measure(half, None, 0, 0)
    stats = moments_to_stats(combine_moments(moments)).astype(np.float32)
    by_scale = {}
    with progress_bar(total=3 * 2 * len(grid), desc="tiles at 1, 1/2, 1/4", unit="tile") as bar:
        for scale in (1, 2, 4):
            by_scale[scale] = stylise_at(engine, eyes, grid, scale, stats, bar)
    seconds = time.perf_counter() - started
    reference = tiles.stitch(by_scale[1], grid)
    full_pixels = input_pixels(grid, np.ones(len(grid), np.int8))
    rows = []
    outputs = {}
    for rings in RING_SETTINGS:
        per_eye = [tiles.tile_scales(grid, (grid.height / 2, grid.width / 2), rings) for _ in eyes]
        scales = np.concatenate(per_eye)
        slots = np.stack([by_scale[s][i] for i, s in enumerate(scales.tolist())])
        out = tiles.stitch(slots, grid, scales=scales)
        outputs[rings] = (out, per_eye[0])
        rings_of_pixels = ring_map(grid, per_eye[0])
        row = {"rings": list(rings), "tiles": {str(s): int((per_eye[0] == s).sum()) for s in tiles.SCALES},
               "cost_vs_unfoveated": input_pixels(grid, per_eye[0]) / full_pixels,
               "psnr_db": psnr(out, reference), "ssim": ssim(torch.from_numpy(out).permute(0, 3, 1, 2).float(),
                                                             torch.from_numpy(reference).permute(0, 3, 1, 2).float()),
               "rings_db": {}, "area": {}}
        for scale in tiles.SCALES:
            where = rings_of_pixels == scale
            row["area"][str(scale)] = float(where.mean())
            if where.any():
                row["rings_db"][str(scale)] = psnr(out[:, where], reference[:, where])
        rows.append(row)
    command = "python " + shlex.join([sys.argv[0]] + sys.argv[1:])
    result = {"command": command, "style": args.style, "eye_shape": list(eye_shape), "grid": [grid.rows, grid.cols],
              "tile_in_shapes": {str(s): list(tiles.level_grid(grid, s).in_shape) for s in tiles.SCALES},
              "cpu": platform.processor() or platform.machine(), "threads": args.threads,
              "load_average": list(os.getloadavg()), "seconds": seconds, "settings": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    figure(outputs[tuple(tiles.RINGS)], reference, eyes, grid, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(
        f"# Foveation: each ring against the unfoveated output\n\nCommand: `{command}`\n\n{args.style}, the demo "
        f"scene at {eye_shape[1]}x{eye_shape[0]} per eye, {grid.rows}x{grid.cols} tiles per eye, all tiles with the "
        f"same statistics. Ring = the scale of the tile whose core holds the pixel; ring 1 includes the blend bands "
        f"shared with scaled neighbours. Figure: `{out.with_suffix('.png').name}` (default rings "
        f"{', '.join(map(str, tiles.RINGS))}).\n\n{table(result)}\n")
    print(table(result))
    return 0


def table(result: dict) -> str:
    def db(value: float | None) -> str:
        return "-" if value is None else "identical" if value == float("inf") else f"{value:.1f}"

    lines = ["| rings | tiles at 1 / 1/2 / 1/4 per eye | area at 1 / 1/2 / 1/4 | network input vs unfoveated | "
             "PSNR all dB | ring 1 | ring 1/2 | ring 1/4 | SSIM all |", "|" + "---|" * 9]
    for row in result["settings"]:
        scales = [str(s) for s in tiles.SCALES]
        cost = row["cost_vs_unfoveated"]
        lines.append("| " + " | ".join([
            ", ".join(f"{r:g}" for r in row["rings"]),
            " / ".join(str(row["tiles"][s]) for s in scales),
            " / ".join(f"{100 * row['area'][s]:.0f}%" for s in scales),
            f"{cost:.2f} ({1 / cost:.2f}x fewer pixels)",
            db(row["psnr_db"]), *(db(row["rings_db"].get(s)) for s in scales), f"{row['ssim']:.3f}"]) + " |")
    return "\n".join(lines)


def figure(chosen, reference: np.ndarray, eyes: np.ndarray, grid: tiles.TileGrid, path: Path) -> None:
    """Left eye foveated with its rings outlined; 1:1 crops from the 1/2 and 1/4 rings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, scales = chosen
    rings = ring_map(grid, scales)
    size = 320
    crops = []
    for scale in (2, 4):
        ys, xs = np.nonzero(rings == scale)
        if len(ys):
            k = len(ys) // 2
            y, x = int(np.clip(ys[k] - size // 2, 0, grid.height - size)), int(np.clip(xs[k] - size // 2, 0, grid.width - size))
            crops.append((scale, y, x))
    fig = plt.figure(figsize=(14, 8))
    overview = fig.add_subplot(1, 1 + len(crops), 1)
    overview.imshow(out[0])
    overview.contour(rings, levels=[1.5, 3], colors=["white", "cyan"], linewidths=1)
    for scale, y, x in crops:
        overview.add_patch(plt.Rectangle((x, y), size, size, fill=False, color="yellow", linewidth=1.5))
    overview.set_title("left eye, foveated (rings 1 | 1/2 | 1/4 outlined)", fontsize=9)
    overview.axis("off")
    for column, (scale, y, x) in enumerate(crops, start=2):
        pair = np.concatenate([reference[0, y:y + size, x:x + size], np.full((8, size, 3), 255, np.uint8),
                               out[0, y:y + size, x:x + size]], axis=0)
        axis = fig.add_subplot(1, 1 + len(crops), column)
        axis.imshow(pair, interpolation="nearest")
        axis.set_title(f"ring 1/{scale}, 1:1: unfoveated (top)\nfoveated (bottom)", fontsize=9)
        axis.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
