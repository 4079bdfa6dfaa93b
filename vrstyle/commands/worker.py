"""Run a style worker on one device: load the styles once, then serve tiles from a broker.

On CUDA the networks run in fp16, channels-last, through torch.compile with CUDA graphs
(``--no-fp16``, ``--no-compile`` to compare);
``--warmup WxH`` compiles for the tile shape clients will send (``tile + 2 * (halo +
overlap)`` px) before the worker announces itself, so no frame pays for compilation.
"""

from __future__ import annotations

import argparse
import logging
import sys

from vrstyle import settings
from vrstyle.commands._common import (
    add_curve_arguments, add_heartbeat_argument, counted, positive_float, positive_int, stop_on_signals,
)
from vrstyle.errors import VrstyleError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", default=settings.BROKER_WORKERS, metavar="ENDPOINT",
                        help=f"the broker's worker endpoint (default {settings.BROKER_WORKERS})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    add_worker_arguments(parser)


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with `vrstyle workers`."""
    parser.add_argument("--style", action="append", metavar="NAME",
                        help="style, model name or model file to serve (repeat for several; "
                             f"default {settings.DEFAULT_STYLE}); null and identity answer without a network "
                             "(a ready-made tile, the tile copied back), to measure the data path")
    parser.add_argument("--credit", type=positive_int, default=settings.WORKER_CREDIT,
                        help=f"requests held at once (default {settings.WORKER_CREDIT})")
    parser.add_argument("--batch-tiles", type=positive_int, default=settings.WORKER_BATCH_TILES,
                        help=f"most tiles in one forward pass (default {settings.WORKER_BATCH_TILES})")
    parser.add_argument("--batch-window", type=positive_float, default=settings.BATCH_WINDOW_S * 1000, metavar="MS",
                        help=f"wait this long for requests to batch together (default {settings.BATCH_WINDOW_S * 1000:g} ms)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads for inference (default: torch's)")
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction,
                        help="run the networks in fp16 (default: on CUDA, which it needs)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction,
                        help="run the networks through torch.compile (default: on CUDA)")
    parser.add_argument("--reference", action="store_true",
                        help="run PyTorch's layers instead of the compiled CPU kernels: binary layers as their float "
                             "simulation, the RGB tail as PyTorch's convolution (checks)")
    parser.add_argument("--warmup", action="append", default=[], metavar="WxH",
                        help="tile shape (as sent: core + 2 * (halo + overlap)) to compile and warm up for")
    parser.add_argument("--halo", type=int, default=settings.HALO, help="halo of the warm-up tiles")
    parser.add_argument("--overlap", type=int, default=settings.OVERLAP, help="overlap of the warm-up tiles")
    add_heartbeat_argument(parser)
    add_curve_arguments(parser, default_name="worker")


def run(args: argparse.Namespace) -> int:
    import torch

    from vrstyle.models import StyleEngine, resolve_model
    from vrstyle.transport.datapath import DATA_PATHS
    from vrstyle.transport.security import peer_keys
    from vrstyle.transport.worker import StyleWorker

    shapes = [settings.parse_size(text, "--warmup") for text in args.warmup]
    keys = peer_keys(args.curve, args.key_name) if args.curve else None
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    half = cuda if args.fp16 is None else args.fp16
    compiled = cuda if args.compile is None else args.compile
    styles = args.style or [settings.DEFAULT_STYLE]
    if compiled:
        configure_compile(len(styles), len(shapes), args.batch_tiles)
    engines = {}
    for name in styles:
        if name in DATA_PATHS:
            engines[name] = DATA_PATHS[name]()
            continue
        spec = resolve_model(name)
        engine = StyleEngine(spec.load(), device=args.device, half=half, channels_last=cuda, compile=compiled,
                             reference=args.reference)
        for shape in shapes:
            log.info("warming up %s for %dx%d tiles", spec.name, shape[1], shape[0])
            crop, margin = args.halo, args.halo + args.overlap
            if 2 * margin >= min(shape):
                raise VrstyleError(f"--warmup {shape[1]}x{shape[0]} leaves no core with halo {args.halo} and "
                                   f"overlap {args.overlap}")
            engine.warmup(shape, args.batch_tiles, crop, margin)
        engines[name] = engines[spec.name] = engine
    with StyleWorker(args.broker, engines, device=args.device, credit=args.credit,
                     batch_window_s=args.batch_window / 1000, max_batch_tiles=args.batch_tiles,
                     heartbeat_s=args.heartbeat, keys=keys) as worker:
        log.info("worker on %s serving %s, connecting to %s", args.device, ", ".join(sorted(engines)), args.broker)
        worker.run(stop_on_signals())
    print(f"vrstyle worker: served {', '.join(sorted(engines))} on {args.device}; "
          f"stopped ({counted(worker.counters, 'no requests')})", file=sys.stderr)
    return 0


def configure_compile(styles: int, shapes: int, batch_tiles: int) -> None:
    """One fresh compile cache for this process, large enough for every graph it will build
    (per style and tile shape, one per padded batch size; without the room dynamo falls back
    to slow generic code)."""
    import torch._dynamo

    torch._dynamo.reset()
    sizes = max(batch_tiles - 1, 0).bit_length() + 1
    torch._dynamo.config.recompile_limit = max(8, 2 * styles * max(shapes, 1) * sizes)
