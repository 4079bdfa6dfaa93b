"""Distil a student network from a teacher: calibration, then gradient descent, then export.

Example: ``vrstyle distill --teacher candy --student student --steps 200 --output candy-binary.safetensors``
(the ``student`` architecture defaults to the shipped binary design).
"""

from __future__ import annotations

import argparse
import json

from vrstyle import settings
from vrstyle.commands._checks import model_output, output_folder
from vrstyle.commands._common import add_torch_arguments, positive_int, torch_device
from vrstyle.errors import VrstyleError


def parse_layers(text: str) -> dict[str, str]:
    """``body=binary,conv3=int8`` -> {"body": "binary", "conv3": "int8"}."""
    layers = {}
    for part in filter(None, text.split(",")):
        group, sep, kind = part.partition("=")
        if not sep:
            raise VrstyleError(f"--layers wants GROUP=KIND pairs separated by commas, got {part!r}")
        layers[group.strip()] = kind.strip()
    return layers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", default=settings.DEFAULT_STYLE, help="teacher: a style (candy, mosaic, ..., cartoon) or a model file from vrstyle train")
    parser.add_argument("--student", default="student", help="student architecture (student, johnson, cartoon)")
    parser.add_argument("--config", default="{}", help="student configuration as JSON, e.g. '{\"width\": 16}'")
    parser.add_argument("--layers", default=None,
                        help="layer kinds of a 'student', e.g. body=binary,conv3=binary_weights,deconv1=int8 "
                             "(kinds: float, int8, binary_weights, binary; groups not named are float)")
    parser.add_argument("--planes", type=positive_int, default=None, help="binary activation planes (default 1)")
    parser.add_argument("--init", default="calibrate",
                        help="calibrate (layer-by-layer fit to the teacher), teacher (copy its weights), random, prune "
                             "(a narrower cartoon student cut from the cartoon teacher), or blockwise (teacher weights, then each residual block trained on cached teacher "
                             "features; default calibrate), or a student .safetensors file to continue (more steps for a "
                             "shipped student)")
    parser.add_argument("--calibration-images", type=int, default=settings.CALIBRATION_IMAGES,
                        help=f"photos for calibration or block-wise features (default {settings.CALIBRATION_IMAGES})")
    parser.add_argument("--block-steps", type=int, default=0, help="block-wise steps per residual block (default 0)")
    parser.add_argument("--block-batch", type=positive_int, default=4, help="photos per block-wise step (default 4)")
    parser.add_argument("--block-lr", type=float, default=1e-3, help="block-wise Adam learning rate (default 1e-3)")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="weight of the stability term: output change under ±1 grey-level noise (default 0)")
    parser.add_argument("--steps", type=int, default=0, help="gradient steps after initialisation (default 0)")
    parser.add_argument("--batch", type=positive_int, default=4, help="crops per step (default 4)")
    parser.add_argument("--crop", type=positive_int, default=128, help="crop size, px (default 128)")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4)")
    parser.add_argument("--schedule", default="constant",
                        help="learning rate over the steps: constant, or cosine (decays to zero at the last step)")
    parser.add_argument("--vgg-weight", type=float, default=0.0, help="weight of the VGG19 perceptual term")
    parser.add_argument("--colour", default="none", help="target colour correction: none or luminance")
    parser.add_argument("--seed", type=int, default=0, help="random seed: photo order, crops, initial weights")
    add_torch_arguments(parser, "cpu")
    parser.add_argument("--run", dest="run_dir", type=output_folder, required=True, help="run folder: checkpoint and loss log (resumes if present)")
    parser.add_argument("--output", type=model_output, help="write the student here as a bit-packed .safetensors model file")
    parser.add_argument("--name", help="model name stored in the file (default <teacher>/<student>)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vrstyle.models import resolve_model
    from vrstyle.train.distill import DistillConfig, distill, export, teacher_name

    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as exc:
        raise VrstyleError(f"--config is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise VrstyleError("--config must be a JSON object")
    if args.layers is not None:
        config["layers"] = parse_layers(args.layers)
    if args.planes is not None:
        config["planes"] = args.planes
    torch_device(args)
    style = resolve_model(teacher_name(args.teacher)).style  # an unknown teacher fails here, before any work
    cfg = DistillConfig(teacher=args.teacher, arch=args.student, config=config, init=args.init,
                        calibration_images=args.calibration_images, steps=args.steps, batch=args.batch,
                        crop=args.crop, lr=args.lr, schedule=args.schedule, vgg_weight=args.vgg_weight, colour=args.colour,
                        noise=args.noise, block_steps=args.block_steps, block_batch=args.block_batch,
                        block_lr=args.block_lr, seed=args.seed, device=args.device)
    student = distill(cfg, Path(args.run_dir), progress=None)
    if args.output:
        size = export(student, cfg, Path(args.output), args.name or f"{style}/{args.student}")
        print(f"wrote {args.output} ({size / 1000:.1f} KB)")
    return 0
