"""Paintings of one photo in two artworks' styles, with and without deep dream: losses and a figure.

    python benchmarks/paint_figure.py --out benchmarks/results/paint

Writes ``<out>.json`` (loss histories' ends, times), ``<out>.md`` (table and command) and
``<out>.png`` (photo and artworks on top; each artwork's painting without and with dream below).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vrstyle.paint import Dream, PaintConfig, paint, vgg_for
from vrstyle.train.data import data_dir


def load(path: Path, side: int) -> torch.Tensor:
    image = Image.open(path).convert("RGB")
    scale = side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float().contiguous()


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image[0].permute(1, 2, 0).round().byte().numpy())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", default="content/tubingen.jpg", help="photo, relative to the shared data")
    parser.add_argument("--styles", default="styles/jcjohnson/starry_night.jpg,styles/jcjohnson/the_scream.jpg")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dream", default="relu4_4:37")
    parser.add_argument("--dream-weight", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = data_dir()
    content = load(data / args.content, args.size)
    rows, results = [], []
    for style_path in args.styles.split(","):
        style = load(data / style_path, args.size)
        row = [to_pil(style)]
        for dream in (None, Dream.parse(args.dream, args.dream_weight)):
            config = PaintConfig(steps=args.steps, dream=dream)
            vgg = vgg_for(data / "vgg" / "vgg19_features.pth", config)
            start = time.perf_counter()
            image, history = paint(vgg, content, style, config)
            seconds = time.perf_counter() - start
            row.append(to_pil(image))
            results.append({"style": style_path, "dream_layer": args.dream if dream else None,
                            "seconds": round(seconds, 1),
                            "style_loss": [history.style[0], history.style[-1]], "style_drop": history.style_drop(),
                            "content_loss": [history.content[0], min(history.content), history.content[-1]],
                            "dream": [history.dream[0], history.dream[-1]] if dream else None})
            print(results[-1], flush=True)
        rows.append(row)
    write(args, content, rows, results)
    return 0


def write(args: argparse.Namespace, content: torch.Tensor, rows: list[list[Image.Image]], results: list[dict]) -> None:
    photo = to_pil(content)
    w, h = photo.size
    pad, label = 8, 22
    sheet = Image.new("RGB", (3 * w + 4 * pad, (len(rows) + 1) * (h + label) + (len(rows) + 2) * pad), "white")
    draw = ImageDraw.Draw(sheet)
    y = pad
    sheet.paste(photo, (pad, y + label))
    draw.text((pad, y + 4), "photo", fill="black")
    for r, row in enumerate(rows):
        y = pad + (r + 1) * (h + label + pad)
        for c, (image, name) in enumerate(zip(row, ("artwork", "painted", f"painted + dream {args.dream}"))):
            x = pad + c * (w + pad)
            thumb = image.copy()
            thumb.thumbnail((w, h))
            sheet.paste(thumb, (x, y + label))
            draw.text((x, y + 4), name, fill="black")
    sheet.save(args.out.with_suffix(".png"))
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "results": results}, indent=1))
    lines = ["# vrstyle paint: two artworks, with and without deep dream", "", f"Command: `{command}`", "",
             f"Photo `{args.content}` at {w}x{h}, {args.steps} L-BFGS steps from seeded noise, default weights "
             f"(content 1, style 10, TV 0.001); losses normalised by their targets. Dream: `{args.dream}`, "
             f"weight {args.dream_weight}. {platform.machine()} CPU, {args.threads} torch threads.", "",
             "| artwork | dream | style loss start -> end | lower by | content loss start -> end | s |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {Path(r['style']).stem} | {r['dream_layer'] or '-'} | {r['style_loss'][0]:.3g} -> "
                     f"{r['style_loss'][1]:.3g} | {r['style_drop']:.0f}x | {r['content_loss'][0]:.3g} -> "
                     f"{r['content_loss'][2]:.3g} | {r['seconds']:.0f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
