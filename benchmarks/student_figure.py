"""Photo | teacher | student at 1:1 (no resampling) on held-out photos, one figure per style.

    python benchmarks/student_figure.py candy --student candy/binary --out benchmarks/results/student-candy.png

Each row is one held-out photo stylised whole (per-image statistics), with a ``--crop`` px
square cut from its centre after stylisation, so strokes are seen at the size they have in
the full image. The label strip names each column and the student's PSNR on the whole photo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vrstyle.models import load_model
from vrstyle.models.engine import StyleEngine
from vrstyle.train import losses
from vrstyle.train.data import data_dir
from vrstyle.train.evaluate import eval_photo

PHOTOS = ("kodak24/kodim23.png", "bsds500/test/100039.jpg")
LABEL_HEIGHT = 18


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 images (:func:`vrstyle.train.losses.psnr`)."""
    return losses.psnr(torch.from_numpy(a), torch.from_numpy(b))


def centre(image: np.ndarray, size: int) -> np.ndarray:
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[max(top, 0):max(top, 0) + size, max(left, 0):max(left, 0) + size]


def labelled_strip(labels: list[str], images: list[Image.Image]) -> Image.Image:
    """Images of one height side by side, each under its label."""
    strip = Image.new("RGB", (sum(image.width for image in images), LABEL_HEIGHT + images[0].height), "white")
    draw, x = ImageDraw.Draw(strip), 0
    for label, image in zip(labels, images):
        strip.paste(image, (x, LABEL_HEIGHT))
        draw.text((x + 4, 3), label, fill="black")
        x += image.width
    return strip


def stacked(strips: list[Image.Image]) -> Image.Image:
    """Strips one under the other, left-aligned on white."""
    figure = Image.new("RGB", (max(s.width for s in strips), sum(s.height for s in strips)), "white")
    y = 0
    for strip in strips:
        figure.paste(strip, (0, y))
        y += strip.height
    return figure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("style")
    parser.add_argument("--student", required=True, help="student model name or file")
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), help="photos under the shared photos folder")
    parser.add_argument("--crop", type=int, default=320, help="side of the 1:1 centre crop, px")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    teacher = StyleEngine(load_model(f"{args.style}/teacher"))
    student = StyleEngine(load_model(args.student))
    rows = []
    for name in args.photos:
        photo = eval_photo(data_dir() / "photos" / name)
        t, s = teacher.stylize(photo[None], None)[0], student.stylize(photo[None], None)[0]
        labels = ("photo " + Path(name).name, f"{args.style}/teacher", f"student: {psnr(s, t):.1f} dB")
        rows.append(labelled_strip(labels, [Image.fromarray(centre(image, args.crop)) for image in (photo, t, s)]))
    stacked(rows).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
