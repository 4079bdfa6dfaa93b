"""Train a new feed-forward style from any artwork (Johnson et al.'s perceptual losses), resumable.

Example: ``vrstyle train --style-image art.jpg --run runs/art --output art.safetensors``: fine-tunes
the candy teacher towards the artwork on crops of the shared photos (``--init random`` starts
from scratch, far slower). The result loads anywhere a model name does, by its path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vrstyle.commands._checks import input_file, model_output, output_folder
from vrstyle.commands._common import add_torch_arguments, positive_float, positive_int, torch_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style-image", type=input_file, required=True, help="the artwork (JPEG or PNG)")
    parser.add_argument("--run", dest="run_dir", type=output_folder, required=True,
                        help="run folder: checkpoint and loss log (resumes if present)")
    parser.add_argument("--output", type=model_output, help="write the network here as a .safetensors model file")
    parser.add_argument("--name", help="model name stored in the file (default <artwork>/teacher)")
    parser.add_argument("--init", default="candy", help="teacher style to fine-tune from, or random")
    parser.add_argument("--steps", type=int, default=1000, help="training steps in all (a resumed run goes on to this)")
    parser.add_argument("--batch", type=positive_int, default=4, help="photo crops per step")
    parser.add_argument("--crop", type=positive_int, default=256, help="crop size, px (a multiple of 4)")
    parser.add_argument("--style-size", type=positive_int, default=512, help="longer side of the artwork, px")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--content-weight", type=float, default=1.0, help="weight of the content loss")
    parser.add_argument("--style-weight", type=float, default=10.0, help="weight of the style loss")
    parser.add_argument("--tv-weight", type=float, default=1e-3, help="weight of total variation")
    parser.add_argument("--seed", type=int, default=0, help="random seed: crops and initial weights")
    add_torch_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from vrstyle.train.perceptual import TrainConfig, export_style, train_style

    device = torch_device(args)
    cfg = TrainConfig(style_image=str(args.style_image), init=args.init, steps=args.steps, batch=args.batch,
                      crop=args.crop, style_size=args.style_size, lr=args.lr, content_weight=args.content_weight,
                      style_weight=args.style_weight, tv_weight=args.tv_weight, seed=args.seed, device=str(device))
    net = train_style(cfg, Path(args.run_dir))
    if args.output:
        name = args.name or f"{Path(args.style_image).stem}/teacher"
        size = export_style(net, cfg, Path(args.output), name)
        print(f"wrote {args.output} ({size / 1e6:.2f} MB) as {name}")
    return 0
