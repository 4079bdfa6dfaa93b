"""GPU stitching (vrstyle.gl.Compositor) against the CPU stitch (tiles.stitch), side by side.

Stitches a stereo frame of random stylised tiles at a headset's eye size both ways and
reports the median time of each stage. Run headless (EGL); on a machine without a GPU,
Mesa's llvmpipe renders on the CPU, so the ratio there says little about a GPU.

    python benchmarks/compositor.py --eye-size quest3 --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from tqdm import tqdm

import tiles
from vrstyle import settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eye-size", default="quest3", help="eye WIDTHxHEIGHT or a headset preset (default: quest3)")
    parser.add_argument("--tile", type=int, default=settings.TILE)
    parser.add_argument("--overlap", type=int, default=settings.OVERLAP)
    parser.add_argument("--ramp", default=settings.RAMP)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    height, width = settings.parse_eye(args.eye_size)[1]

    from vrstyle.gl.compositor import Compositor
    from vrstyle.gl.context import HeadlessContext, describe_current
    from OpenGL import GL  # after vrstyle.gl, which points PyOpenGL at EGL

    context = HeadlessContext()
    grid = tiles.plan_grid(height, width, args.tile, settings.HALO, args.overlap, settings.ALIGN)
    stack = np.random.default_rng(0).integers(0, 256, (2 * len(grid),) + grid.out_shape + (3,), np.uint8)
    compositor = Compositor(grid, args.ramp)
    times: dict[str, list[float]] = {"cpu stitch": [], "gl upload": [], "gl composite": [], "gl read back": []}
    for _ in tqdm(range(args.repeats + 1), desc="stitch", unit="frame"):
        start = time.perf_counter()
        cpu = tiles.stitch(stack, grid, args.ramp)
        times["cpu stitch"].append(time.perf_counter() - start)
        start = time.perf_counter()
        compositor.upload(stack)
        GL.glFinish()
        uploaded = time.perf_counter()
        compositor.composite()
        GL.glFinish()
        composited = time.perf_counter()
        gl = np.stack([compositor.read(0), compositor.read(1)])
        times["gl upload"].append(uploaded - start)
        times["gl composite"].append(composited - uploaded)
        times["gl read back"].append(time.perf_counter() - composited)
    assert np.abs(gl.astype(int) - cpu).max() <= 1
    medians = {name: statistics.median(values[1:]) for name, values in times.items()}  # the first run warms up
    print(f"{describe_current()}")
    print(f"eye {height}x{width}, {grid.rows}x{grid.cols} tiles of {grid.out_shape[0]}x{grid.out_shape[1]} px per eye, "
          f"ramp {args.ramp}, median of {args.repeats}")
    print("| stage | ms per stereo frame |\n|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {1000 * value:.1f} |")
    gpu = medians["gl upload"] + medians["gl composite"]
    print(f"| gl upload + composite (what a display path pays) | {1000 * gpu:.1f} |")
    print(f"\nCPU stitch / GL upload + composite: {medians['cpu stitch'] / gpu:.2f}x")
    compositor.close()
    context.close()


if __name__ == "__main__":
    main()
