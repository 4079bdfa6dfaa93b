"""Cutting and CPU stitching of a headset frame against a memcpy of the same frame, one thread.

    python benchmarks/tiles_speed.py --out benchmarks/results/tiles-speed

Quest 3 stereo eyes by default (2 x 2064x2208 RGBA uint8; ``--channels 3`` for RGB), 512 px tiles with the default
halo and overlap. Beside ``tiles.cut``, ``tiles.cut_windows`` and ``tiles.Stitcher`` it times, in the same run, the
algorithms they replaced, kept here as references: cutting by numpy block copies (ordinary
stores) and by fancy indexing (every pixel through an index array), and stitching by weighted
accumulation of every pixel in float32. Everything runs on one thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

import tiles
from tiles.cut import reflect_indices
from tiles.stitch import WEIGHT_EPS, _overlap_region
from vrstyle import settings
from vrstyle.timing import interleaved_medians


def cut_by_indexing(frames: np.ndarray, grid: tiles.TileGrid) -> np.ndarray:
    """Every tile through reflected index arrays: the cut before the block-copy one."""
    rows = [reflect_indices(grid.height, r * grid.core_h - grid.margin, grid.in_shape[0]) for r in range(grid.rows)]
    cols = [reflect_indices(grid.width, c * grid.core_w - grid.margin, grid.in_shape[1]) for c in range(grid.cols)]
    return np.stack([np.take(np.take(frame, rows[t.row], axis=0), cols[t.col], axis=1)
                     for frame in frames for t in grid.tiles()])


def cut_by_block_copies(frames: np.ndarray, grid: tiles.TileGrid, out: np.ndarray) -> np.ndarray:
    """Each tile's inside part as one numpy slice copy (ordinary stores), then its missing rows and
    columns mirrored from itself: the cut before the streaming one (RGBA pixels moved as uint32)."""
    (th, tw), pixels, source = grid.in_shape, out, frames
    if frames.shape[-1] == 4:
        pixels, source = out.view(np.uint32), frames.view(np.uint32)
    for k, (image, t) in enumerate((image, t) for image in source for t in grid.tiles()):
        y, x = t.y - grid.margin, t.x - grid.margin
        top, bottom = max(0, -y), max(0, y + th - grid.height)
        left, right = max(0, -x), max(0, x + tw - grid.width)
        pixels[k, top:th - bottom, left:tw - right] = image[y + top:y + th - bottom, x + left:x + tw - right]
        for window, before, after in ((pixels[k, :, left:tw - right], top, bottom),
                                      (pixels[k].swapaxes(0, 1), left, right)):
            if before:
                window[:before] = window[before + 1:2 * before + 1][::-1]
            if after:
                last = len(window) - after - 1
                window[last + 1:] = window[last - after:last][::-1]
    return out


def stitch_every_pixel(outs: np.ndarray, grid: tiles.TileGrid, batch: int) -> np.ndarray:
    """Weighted sums and weight sums of every pixel in float32, then one divide: the stitch before."""
    total = np.zeros((batch, grid.height, grid.width, outs.shape[-1]), np.float32)
    weight = np.zeros((batch, grid.height, grid.width), np.float32)
    for index, tile in enumerate(outs):
        image, t = divmod(index, len(grid))
        dst, src = _overlap_region(grid, t, 0, grid.height)
        w = tiles.tile_weights(grid, t)[src]
        total[(image,) + dst] += w[..., None] * tile[src]
        weight[(image,) + dst] += w
    out = np.zeros_like(total)
    np.divide(total, weight[..., None], out=out, where=weight[..., None] > WEIGHT_EPS)
    return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)


def stitch(outs: np.ndarray, grid: tiles.TileGrid, batch: int) -> np.ndarray:
    stitcher = tiles.Stitcher(grid, batch, outs.shape[-1], dtype=np.uint8)
    for index, tile in enumerate(outs):
        stitcher.add(index, tile)
    return stitcher.result()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eye-size", type=settings.parse_eye, default=settings.parse_eye("quest3"),
                        help="WxH or a headset preset (default quest3)")
    parser.add_argument("--tile", type=int, default=settings.TILE)
    parser.add_argument("--channels", type=int, choices=(3, 4), default=4, help="RGB or RGBA frames (default 4)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", help="output prefix (.json, .md)")
    args = parser.parse_args()
    height, width = args.eye_size[1]
    grid = tiles.plan_grid(height, width, tile=args.tile, halo=settings.HALO, overlap=settings.OVERLAP)
    frames = np.random.default_rng(0).integers(0, 256, (2, height, width, args.channels), dtype=np.uint8)
    outs = tiles.crop_halo(tiles.cut(frames, grid), grid).copy()
    assert np.array_equal(tiles.cut(frames, grid), cut_by_indexing(frames, grid))
    assert np.array_equal(tiles.cut_windows(frames, grid)[:], tiles.cut(frames, grid))
    assert np.array_equal(stitch(outs, grid, 2), stitch_every_pixel(outs, grid, 2))
    into = np.empty_like(frames)
    reused, padded = tiles.cut(frames, grid), tiles.pad_frame(frames, grid)
    blocks = np.empty_like(reused)
    assert np.array_equal(reused, cut_by_block_copies(frames, grid, blocks))
    runs = {"memcpy of the frame": lambda: np.copyto(into, frames),
            "tiles.cut": lambda: tiles.cut(frames, grid),
            "tiles.cut into a reused array": lambda: tiles.cut(frames, grid, out=reused),
            "tiles.cut_windows (every tile a window of one padded copy)": lambda: tiles.cut_windows(frames, grid),
            "tiles.cut_windows into a reused array": lambda: tiles.cut_windows(frames, grid, out=padded),
            "cut by numpy block copies into a reused array (before)": lambda: cut_by_block_copies(frames, grid, blocks),
            "cut by fancy indexing (before)": lambda: cut_by_indexing(frames, grid),
            "tiles.Stitcher": lambda: stitch(outs, grid, 2),
            "stitch every pixel in float32 (before)": lambda: stitch_every_pixel(outs, grid, 2)}
    ms = {key: seconds * 1e3 for key, seconds in interleaved_medians(runs, args.repeats).items()}
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [f"# Cutting and stitching a {width}x{height} stereo frame ({'RGBA' if args.channels == 4 else 'RGB'} uint8), "
             "one thread",
             "", f"Command: `{command}`", "",
             f"{len(grid)} tiles per eye ({grid.rows}x{grid.cols}, {grid.in_shape[1]}x{grid.in_shape[0]} px cut, "
             f"{grid.out_shape[1]}x{grid.out_shape[0]} returned); {platform.machine()}, numpy {np.__version__}; "
             f"medians of {args.repeats} interleaved runs. Outputs checked equal to the references first.", "",
             "| step | ms | vs memcpy of the frame |", "|---|---|---|"]
    lines += [f"| {key} | {value:.1f} | {value / ms['memcpy of the frame']:.1f}x |" for key, value in ms.items()]
    print("\n".join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".md").write_text("\n".join(lines) + "\n")
        Path(args.out + ".json").write_text(json.dumps({"command": command, "grid": dataclasses.asdict(grid), "ms": ms,
                                                        "machine": platform.machine()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
