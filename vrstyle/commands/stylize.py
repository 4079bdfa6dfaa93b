"""Stylise an image of any size: in one pass when it fits the memory budget, else tiled, in bounded memory."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from vrstyle import settings
from vrstyle.commands._checks import input_file, output_image
from vrstyle.commands._common import (
    add_codec_arguments, add_curve_arguments, open_broker, plural, positive_float, positive_int,
)
from vrstyle.errors import VrstyleError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=input_file, help="JPEG or PNG image to stylise")
    parser.add_argument("output", type=output_image, help="where to write the result (format from the suffix)")
    parser.add_argument("--style", default=settings.DEFAULT_STYLE,
                        help="style or model name (candy, candy/teacher, ...) or model file "
                             f"(default {settings.DEFAULT_STYLE})")
    parser.add_argument("--tile", type=positive_int,
                        help=f"largest tile core, px (default: the whole image in one pass when it fits --memory, "
                             f"else {settings.TILE}; {settings.TILE} with --broker)")
    parser.add_argument("--memory", type=positive_float, default=settings.STYLIZE_MEMORY_GB, metavar="GB",
                        help="memory budget of stylising in this process: picks whole image or tiles, and tiles "
                             f"per pass (default {settings.STYLIZE_MEMORY_GB:g})")
    parser.add_argument("--halo", type=int, default=settings.HALO,
                        help=f"context read around each tile and cropped, px (default {settings.HALO})")
    parser.add_argument("--overlap", type=int, default=settings.OVERLAP,
                        help=f"band blended between neighbouring tiles, px (default {settings.OVERLAP})")
    parser.add_argument("--ramp", choices=("linear", "cosine"), default=settings.RAMP, help="feather ramp")
    parser.add_argument("--batch", type=positive_int,
                        help=f"tiles per forward pass (default: as many as fit --memory, at most {settings.BATCH_TILES})")
    parser.add_argument("--stats", choices=("exact", "sample"), default="exact",
                        help="normalisation statistics of a tiled image: exact (the whole image's; a pass over the "
                             "tiles per norm layer, about 6 forward passes, when the sample does not cover every "
                             "tile) or sample (--stats-tiles tiles measured together: one pass, close, not equal); "
                             "default exact")
    parser.add_argument("--stats-tiles", type=positive_int,
                        help="tiles measured together for the normalisation statistics "
                             f"(default: as many as fit --memory, at most {settings.STATS_TILES})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--reference", action="store_true",
                        help="run PyTorch's layers instead of the compiled CPU kernels: binary layers as their float "
                             "simulation, the RGB tail as PyTorch's convolution (checks)")
    parser.add_argument("--no-shared-stats", action="store_true",
                        help="give each tile its own normalisation statistics (shows seams)")
    parser.add_argument("--broker", metavar="ENDPOINT",
                        help="stylise on the workers of the broker at ENDPOINT (e.g. tcp://127.0.0.1:5555) "
                             "instead of in this process; the result is identical")
    add_curve_arguments(parser, default_name="client")
    add_codec_arguments(parser)
    parser.add_argument("--worker-wait", type=positive_float, default=settings.WORKER_WAIT_S, metavar="S",
                        help="with --broker: how long to wait, saying so, for a worker when none serves the style "
                             f"any more (default {settings.WORKER_WAIT_S:g})")


def run(args: argparse.Namespace) -> int:
    from vrstyle.images import read_rgb, write_rgb
    from vrstyle.stylize import plan_image, stylize_image

    if args.broker and args.device != "cpu":
        raise VrstyleError("--device applies to stylising in this process; with --broker the workers' devices count")
    if args.curve and not args.broker:
        raise VrstyleError("--curve needs --broker")
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise VrstyleError(f"the output {args.output} is the input: it would be overwritten; name another file")
    image = read_rgb(args.input)
    memory = float("inf") if args.broker else args.memory * 1e9  # remote workers: their memory, not ours
    plan = plan_image(image.shape[0], image.shape[1], memory, args.tile or (settings.TILE if args.broker else None),
                      args.halo, args.overlap, args.batch, args.stats_tiles)
    backend = open_broker(args, [args.style])[0] if args.broker else local_backend(args)
    grid = plan.grid
    log.info("%s: %dx%d px, %s", args.input, image.shape[1], image.shape[0],
             "whole in one pass" if plan.whole else
             f"{plural(len(grid), 'tile')} of {grid.in_shape[1]}x{grid.in_shape[0]} px, {plan.batch} a pass")
    start = time.perf_counter()
    try:
        result = stylize_image(backend, image, grid, shared_stats=not args.no_shared_stats, batch=plan.batch,
                               ramp=args.ramp, stats_tiles=plan.stats_tiles, progress=None, style=args.style,
                               worker_wait_s=args.worker_wait, exact=args.stats == "exact")
    finally:
        backend.close()
    write_rgb(args.output, result)
    print(f"vrstyle stylize: wrote {args.output} ({image.shape[1]}x{image.shape[0]}, {args.style}, "
          f"{time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


def local_backend(args: argparse.Namespace):
    from vrstyle.models import StyleEngine, resolve_model
    from vrstyle.transport.local import LocalBackend

    spec = resolve_model(args.style)
    log.info("model %s on %s", spec.name, args.device)
    return LocalBackend(StyleEngine(spec.load(), device=args.device, reference=args.reference))
