"""What compressing tiles for a network link costs and saves: bytes per Quest 3 frame, PSNR, time.

    python benchmarks/codecs.py --out benchmarks/results/codecs

Tiles as a headset client sends them (a real stereo pair from the shared data, scaled to a
Quest 3 eye, cut into 512 px tiles with their halos) and as workers return them (stylised
photos: the shipped candy student on Kodak photos, cut the same way), each compressed tile by
tile as :mod:`vrstyle.transport.codec` does (a thread per core); time per Quest 3 stereo frame.
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
from PIL import Image

import tiles
from vrstyle import settings
from vrstyle.train.data import data_dir
from vrstyle.transport import codec

CASES = [("jpeg", 75), ("jpeg", 90), ("jpeg", 95), ("zstd", 0)]
EYE = settings.EYE_PRESETS["quest3"]  # (height, width)


def stereo_frame(scene: str) -> np.ndarray:
    """Both eyes of a shared stereo pair, scaled to cover a Quest 3 eye and centre-cropped."""
    eyes = []
    for name in ("im0.png", "im1.png"):
        image = Image.open(data_dir() / "stereo" / "middlebury2014" / scene / name).convert("RGB")
        scale = max(EYE[0] / image.height, EYE[1] / image.width)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        top, left = (image.height - EYE[0]) // 2, (image.width - EYE[1]) // 2
        eyes.append(np.asarray(image)[top:top + EYE[0], left:left + EYE[1]])
    return np.stack(eyes)


def stylised_tiles(count: int) -> np.ndarray:
    """Result tiles: the candy student's output on Kodak photos, cut with the frame's grid shape."""
    from vrstyle.models import StyleEngine, load_model
    from vrstyle.train.evaluate import eval_photo

    engine = StyleEngine(load_model("candy"))
    photos = sorted((data_dir() / "photos" / "kodak24").glob("*.png"))[:count]
    out = [engine.stylize(eval_photo(path)[None], None)[0] for path in photos]
    grid = tiles.plan_grid(*out[0].shape[:2], tile=settings.TILE, halo=0, overlap=settings.OVERLAP)
    return np.concatenate([tiles.cut(image[None], grid) for image in out if image.shape == out[0].shape])


def measure(pieces: np.ndarray, name: str, quality: int, megapixels: float) -> dict:
    """Bytes, PSNR and seconds for ``pieces`` compressed, scaled to a Quest 3 stereo frame."""
    start = time.perf_counter()
    sizes, blob = codec.encode(pieces, name, max(quality, 1))
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    back = codec.decode(sizes, blob, name, pieces.shape)
    decode_s = time.perf_counter() - start
    error = np.mean((back.astype(np.float64) - pieces[..., :back.shape[-1]]) ** 2)
    per_frame = 2 * EYE[0] * EYE[1] / 1e6 / megapixels
    return {"codec": name, "quality": quality if name == "jpeg" else None, "ratio": pieces.nbytes / len(blob),
            "mb_per_frame": len(blob) * per_frame / 1e6, "psnr_db": 10 * np.log10(255**2 / error) if error else None,
            "encode_ms_per_frame": 1000 * encode_s * per_frame, "decode_ms_per_frame": 1000 * decode_s * per_frame}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default="Adirondack", help="stereo pair under the shared stereo folder")
    parser.add_argument("--photos", type=int, default=4, help="Kodak photos stylised for the result tiles")
    parser.add_argument("--out", required=True, help="output stem: writes OUT.json and OUT.md")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    frame = stereo_frame(args.scene)
    grid = tiles.plan_grid(*EYE, tile=settings.TILE, halo=settings.HALO, overlap=settings.OVERLAP)
    inputs = tiles.cut(frame, grid)
    outputs = stylised_tiles(args.photos)
    # Megapixels of frame each sample stands for: the halos travel on top of the frame's pixels,
    # and result tiles carry their overlap bands (as many per pixel as the Quest 3 grid's).
    overlap = len(inputs) * np.prod(grid.out_shape) / frame[..., 0].size
    directions = {"to workers (stereo pair, tiles with halos)": (inputs, frame[..., 0].size / 1e6),
                  "from workers (stylised photos)": (outputs, outputs[..., 0].size / 1e6 / overlap)}
    rows = []
    for direction, (pieces, megapixels) in directions.items():
        raw = pieces.nbytes * 2 * EYE[0] * EYE[1] / 1e6 / megapixels / 1e6  # what goes uncompressed
        for name, quality in CASES:
            rows.append({"direction": direction, "raw_mb_per_frame": raw, **measure(pieces, name, quality, megapixels)})
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        {"command": command, "machine": f"{platform.machine()}, {os.cpu_count()} coding threads", "scene": args.scene,
         "rows": rows},
        indent=2) + "\n")
    lines = ["# Tile compression for network links", "", f"Command: `{command}`", "",
             f"Per Quest 3 stereo frame (2 x {EYE[1]}x{EYE[0]}; tile pixels scaled to it), each tile compressed "
             f"on its own, on a thread per core ({os.cpu_count()} here, {platform.machine()}). To workers: the `{args.scene}` stereo pair cut into "
             f"512 px tiles with 56 px halos (halos included: they travel too). From workers: the candy student's "
             f"output on {args.photos} Kodak photos, scaled to the Quest 3 grid's result tiles (cores and overlap "
             f"bands). Raw: the same tiles uncompressed.", "",
             "| direction | codec | MB/frame (raw) | ratio | PSNR dB | encode ms | decode ms |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        label = f"jpeg q{row['quality']}" if row["codec"] == "jpeg" else "zstd (lossless)"
        psnr = "lossless" if row["psnr_db"] is None else f"{row['psnr_db']:.1f}"
        lines.append(f"| {row['direction']} | {label} | {row['mb_per_frame']:.2f} ({row['raw_mb_per_frame']:.1f}) "
                     f"| {row['ratio']:.1f}x | {psnr} | {row['encode_ms_per_frame']:.0f} | {row['decode_ms_per_frame']:.0f} |")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
