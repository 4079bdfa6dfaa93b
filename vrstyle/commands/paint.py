"""Paint a photo in the style of any artwork by optimisation (Gatys et al.), optionally with deep dream.

Slow by design (each step is a VGG19 pass forward and back: about 2 s at 512 px on two CPU
cores, a few ms on a GPU); the feed-forward styles are the real-time path.
"""

from __future__ import annotations

import argparse
import logging

from vrstyle import settings
from vrstyle.commands._checks import input_file, output_image
from vrstyle.commands._common import add_torch_arguments, positive_float, positive_int, torch_device
from vrstyle.errors import VrstyleError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("content", type=input_file, help="the photo (JPEG or PNG)")
    parser.add_argument("style", type=input_file, help="the artwork whose style to paint it in")
    parser.add_argument("output", type=output_image, help="where to write the painting")
    parser.add_argument("--size", type=positive_int, default=settings.PAINT_SIZE,
                        help="longer side of the painting, px")
    parser.add_argument("--steps", type=positive_int, default=settings.PAINT_STEPS,
                        help="optimiser steps per octave")
    parser.add_argument("--optimiser", choices=settings.PAINT_OPTIMISERS, default=settings.PAINT_OPTIMISERS[0],
                        help="L-BFGS or Adam")
    parser.add_argument("--lr", type=positive_float, default=2.0, help="Adam's step size, grey levels")
    parser.add_argument("--init", choices=settings.PAINT_INITS, default=settings.PAINT_INITS[0],
                        help="start from the photo or from noise")
    parser.add_argument("--seed", type=int, default=0, help="random seed (noise start)")
    parser.add_argument("--content-layers", default=",".join(settings.PAINT_CONTENT_LAYERS),
                        help="VGG19 layers, comma separated")
    parser.add_argument("--style-layers", default=",".join(settings.PAINT_STYLE_LAYERS),
                        help="VGG19 layers, comma separated")
    parser.add_argument("--content-weight", type=float, default=1.0, help="weight of the content loss")
    parser.add_argument("--style-weight", type=float, default=settings.PAINT_STYLE_WEIGHT,
                        help="weight of the style loss")
    parser.add_argument("--tv-weight", type=float, default=1e-3, help="weight of total variation")
    parser.add_argument("--octaves", type=positive_int, default=1,
                        help="paint at 1/2^(N-1) size first and refine at doubling sizes")
    parser.add_argument("--dream", metavar="LAYER[:CHANNEL]", help="deep dream: also maximise this VGG19 layer "
                        "(or one channel of it), one the content and style losses do not use, e.g. relu4_4:37")
    parser.add_argument("--dream-weight", type=float, default=1.0, help="weight of the deep-dream term")
    add_torch_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from vrstyle.images import read_rgb, write_rgb
    from vrstyle.paint import Dream, PaintConfig, paint, vgg_for
    from vrstyle.train.data import data_dir

    device = torch_device(args)
    config = PaintConfig(content_layers=_layers(args.content_layers), style_layers=_layers(args.style_layers),
                         content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
                         steps=args.steps, optimiser=args.optimiser, lr=args.lr, init=args.init, seed=args.seed,
                         octaves=args.octaves,
                         dream=Dream.parse(args.dream, args.dream_weight) if args.dream else None)
    content = _tensor(read_rgb(args.content), args.size, device)
    style = _tensor(read_rgb(args.style), args.size, device)
    vgg = vgg_for(data_dir() / "vgg" / "vgg19_features.pth", config).to(device)
    image, history = paint(vgg, content, style, config)
    write_rgb(args.output, image[0].permute(1, 2, 0).round().byte().cpu().numpy())
    dream = f", dream {history.dream[0]:.3g} -> {history.dream[-1]:.3g}" if history.dream else ""
    print(f"wrote {args.output} ({image.shape[-1]}x{image.shape[-2]}): style loss {history.style[0]:.3g} -> "
          f"{history.style[-1]:.3g} ({history.style_drop():.0f}x lower), content loss {history.content[0]:.3g} -> "
          f"{history.content[-1]:.3g}{dream}")
    return 0


def _layers(text: str) -> tuple[str, ...]:
    layers = tuple(name.strip() for name in text.split(",") if name.strip())
    if not layers:
        raise VrstyleError("name at least one VGG19 layer")
    return layers


def _tensor(image, size: int, device):
    """(1, 3, H, W) float 0..255 on ``device``, its longer side ``size`` px."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float()
    scale = size / max(tensor.shape[-2:])
    if scale != 1:
        shape = tuple(max(1, round(s * scale)) for s in tensor.shape[-2:])
        options = {"mode": "area"} if scale < 1 else {"mode": "bicubic", "align_corners": False}
        tensor = F.interpolate(tensor, size=shape, **options)
    return tensor.clamp(0, 255).contiguous().to(device)
