"""GPU stitching (vrstyle.gl.Compositor) against the CPU stitch (tiles.stitch), side by side.

Stitches a stereo frame of random stylised tiles at a headset's eye size both ways and
reports the median time of each stage; also the headset client's other per-frame GL work,
its eye textures read into a frame ring slot, the way it does it (straight into the slot,
rows bottom-up as GL gives them: the workers cut from the rows reversed) against the ways it
did (into a reused array, flipped upright by one copy into the slot; before that, each eye read
into new bytes, flipped upright into a new array, the two stacked, copied). Run headless (EGL); on a machine without a GPU,
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


def eyes_to_ring_first(eye_textures: list[int], slot: np.ndarray) -> np.ndarray:
    """The headset client's first read: four copies of the frame."""
    from OpenGL import GL

    height, width = slot.shape[1:3]
    eyes = []
    for texture in eye_textures:
        GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
        data = GL.glGetTexImage(GL.GL_TEXTURE_2D, 0, GL.GL_RGB, GL.GL_UNSIGNED_BYTE)
        eyes.append(np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(height, width, 3)[::-1]))
    GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
    np.copyto(slot, np.stack(eyes))
    return slot


def eyes_to_ring_copied(eye_textures: list[int], reused: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """The headset client's second read: into a reused array, flipped upright by one copy into the slot."""
    from vrstyle.xr.textures import read_texture

    for texture, into in zip(eye_textures, reused):
        read_texture(texture, into)
    np.copyto(slot, reused[:, ::-1])
    return slot


def eyes_to_ring(eye_textures: list[int], slot: np.ndarray) -> np.ndarray:
    """As the headset client reads now: straight into the slot, bottom-up (returned upright, a view)."""
    from vrstyle.xr.textures import read_texture

    for texture, into in zip(eye_textures, slot):
        read_texture(texture, into)
    return slot[:, ::-1]


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
    from vrstyle.gl.textures import create_texture
    from vrstyle.xr.textures import write_texture
    from OpenGL import GL  # after vrstyle.gl, which points PyOpenGL at EGL

    context = HeadlessContext()
    grid = tiles.plan_grid(height, width, args.tile, settings.HALO, args.overlap, settings.ALIGN)
    stack = np.random.default_rng(0).integers(0, 256, (2 * len(grid),) + grid.out_shape + (3,), np.uint8)
    compositor = Compositor(grid, args.ramp)
    eye_textures = [create_texture(width, height, GL.GL_SRGB8_ALPHA8) for _ in range(2)]
    eyes = np.random.default_rng(1).integers(0, 256, (2, height, width, 3), np.uint8)
    for texture, eye in zip(eye_textures, eyes):
        write_texture(texture, eye)
    reused, slot = np.empty_like(eyes), np.empty_like(eyes)
    readers = {"eyes to a ring slot, first way (four copies)": lambda: eyes_to_ring_first(eye_textures, slot),
               "eyes to a ring slot, second way (one copy)": lambda: eyes_to_ring_copied(eye_textures, reused, slot),
               "eyes to a ring slot, straight in (no copy)": lambda: eyes_to_ring(eye_textures, slot)}
    times: dict[str, list[float]] = {"cpu stitch": [], "gl upload": [], "gl composite": [], "gl read back": [],
                                     **{name: [] for name in readers}}
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
        for name, read in readers.items():
            start = time.perf_counter()
            upright = read()
            times[name].append(time.perf_counter() - start)
            assert np.array_equal(upright, eyes)
            slot[...] = 0
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
    GL.glDeleteTextures(eye_textures)
    context.close()


if __name__ == "__main__":
    main()
