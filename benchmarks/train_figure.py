"""A style trained with ``vrstyle train``: the artwork, and photos through the network it started
from and through the trained one.

    python benchmarks/train_figure.py runs/starry_night.safetensors --artwork styles/jcjohnson/starry_night.jpg \\
        --init candy/teacher --out benchmarks/results/train-starry_night.png

Each photo is stylised whole (per-image statistics) at its held-out evaluation size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

from student_figure import labelled_strip, stacked  # beside this script
from vrstyle.models import load_model
from vrstyle.models.engine import StyleEngine
from vrstyle.train.data import data_dir
from vrstyle.train.evaluate import eval_photo

PHOTOS = ("kodak24/kodim23.png", "kodak24/kodim15.png", "bsds500/test/100039.jpg")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the trained model file")
    parser.add_argument("--artwork", required=True, help="the artwork, relative to the shared data")
    parser.add_argument("--init", required=True, help="the model training started from")
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), help="photos under the shared photos folder")
    parser.add_argument("--height", type=int, default=256, help="row height in the figure, px")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trained, start = StyleEngine(load_model(args.model)), StyleEngine(load_model(args.init))
    art = Image.open(data_dir() / args.artwork).convert("RGB")
    rows = [[(f"artwork: {Path(args.artwork).stem}", art)]]
    for name in args.photos:
        photo = eval_photo(data_dir() / "photos" / name)
        rows.append([(f"photo {Path(name).name}", Image.fromarray(photo)),
                     (f"start: {args.init}", Image.fromarray(start.stylize(photo[None], None)[0])),
                     (f"trained: {Path(args.model).stem}", Image.fromarray(trained.stylize(photo[None], None)[0]))])
    strips = []
    for row in rows:
        labels = [label for label, _ in row]
        strips.append(labelled_strip(labels, [image.resize((round(image.width * args.height / image.height),
                                                            args.height), Image.LANCZOS) for _, image in row]))
    stacked(strips).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
