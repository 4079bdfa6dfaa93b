"""Measure tile throughput headless: stereo frames of a headset's size through the real pipeline.

Starts a broker and style worker processes here (or uses those of --broker), streams frames
through them and reports tiles/s, megapixels/s, frames/s, latency percentiles, per-stage
times, deadline misses and fallbacks, beside the same model in this process on whole eyes and
on tiles without transport. --workers 1,2,4 sweeps. Writes a table, JSON and a PNG plot.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from vrstyle import settings
from vrstyle.commands._checks import eye_size, output_folder
from vrstyle.bench.config import FOVEATION
from vrstyle.commands._common import (
    add_codec_arguments, add_curve_arguments, add_rings_argument, argument_type, positive_float, positive_int,
)
from vrstyle.errors import VrstyleError
from vrstyle.transport.client import PAYLOADS

log = logging.getLogger(__name__)


def parse_counts(text: str) -> list[int]:
    """Worker counts "1,2,4" -> [1, 2, 4]; each at least 1.

    >>> parse_counts("1, 2,4")
    [1, 2, 4]
    """
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise VrstyleError(f"--workers takes counts like 1,2,4, got {text!r}") from None
    if any(count < 1 for count in counts):
        raise VrstyleError(f"worker counts must be at least 1, got {text}")
    return sorted(set(counts))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    presets = ", ".join(f"{name} {w}x{h}" for name, (h, w) in settings.EYE_PRESETS.items())
    parser.add_argument("--eye-size", type=eye_size, default=settings.BENCH_EYE, metavar="PRESET|WxH",
                        help=f"eye buffer size: {presets}, or WIDTHxHEIGHT (default {settings.BENCH_EYE})")
    parser.add_argument("--mono", action="store_true", help="one eye per frame instead of two")
    parser.add_argument("--tile", type=positive_int, default=settings.TILE,
                        help=f"largest tile core, px (default {settings.TILE})")
    parser.add_argument("--halo", type=int, default=settings.HALO, help=f"tile halo, px (default {settings.HALO})")
    parser.add_argument("--overlap", type=int, default=settings.OVERLAP,
                        help=f"band blended between tiles, px (default {settings.OVERLAP})")
    parser.add_argument("--workers", type=argument_type(parse_counts), default=[1], metavar="N[,N...]",
                        help="worker processes to start; a list sweeps, e.g. 1,2,4 (default 1)")
    parser.add_argument("--device", action="append", metavar="DEVICE",
                        help="device of the started workers, in turn; repeat for several, as for mirror (cpu, cuda: "
                             "one per GPU, or --device cuda:0 --device cuda:1); the first also runs the in-process "
                             "comparisons (default cpu)")
    parser.add_argument("--threads", type=positive_int,
                        help="torch threads per CPU worker and in this process (default: cores / most workers)")
    parser.add_argument("--data-path", choices=("null", "identity"),
                        help="measure the data path alone: workers answer without a network (null: a ready-made "
                             "tile; identity: each tile copied back, every byte moving), beside a memcpy of the frame")
    parser.add_argument("--payload", choices=PAYLOADS, default="auto",
                        help="how tiles reach the workers: auto (shared memory on this host, else messages), shm, "
                             "zerocopy or copy (messages, as over a network) (default auto)")
    parser.add_argument("--stitch", choices=("cpu", "none"),
                        help="cpu: stitch every result on the CPU as a desktop display does, in the latency; none: "
                             "results end at the tiles, as a headset's GPU compositor takes them (default: cpu, "
                             "none with --data-path)")
    parser.add_argument("--foveation", choices=FOVEATION, default="off",
                        help="fixed: measure each worker count again with the periphery of each eye at 1/2 and 1/4 "
                             "resolution, and report the gain (default off)")
    add_rings_argument(parser)
    parser.add_argument("--style", default=settings.DEFAULT_STYLE,
                        help=f"style, model name (candy/teacher, candy/binary) or model file (default "
                             f"{settings.DEFAULT_STYLE})")
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction, help="fp16 inference (default: on CUDA)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction,
                        help="torch.compile the networks (default: on CUDA)")
    parser.add_argument("--frames", type=positive_int, default=settings.BENCH_FRAMES,
                        help=f"frames timed per configuration (default {settings.BENCH_FRAMES})")
    parser.add_argument("--warmup", type=int, default=settings.BENCH_WARMUP,
                        help=f"untimed frames first (default {settings.BENCH_WARMUP})")
    parser.add_argument("--rate", type=positive_float, metavar="HZ",
                        help="submit frames at this rate, like a headset (default: as fast as they come back)")
    parser.add_argument("--deadline", type=positive_float, metavar="MS",
                        help="fill tiles not back this long after submission from the previous frame and count "
                             "the misses (default: wait for every tile)")
    parser.add_argument("--depth", type=positive_int, default=settings.PIPELINE_DEPTH,
                        help=f"frames in flight at once (default {settings.PIPELINE_DEPTH})")
    parser.add_argument("--request-tiles", type=positive_int, default=settings.REQUEST_TILES,
                        help=f"tiles per request (default {settings.REQUEST_TILES})")
    parser.add_argument("--source", nargs="+", default=["synthetic"], metavar="PATH",
                        help="synthetic (a moving pattern, default), scene (the 3D demo scene, rendered headless "
                             "with its depth), a folder (a stereo pair or photos), one image, or a left and a right "
                             "image; scaled and cropped to the eye size")
    parser.add_argument("--consistency", choices=("off", "stereo"), default="off",
                        help="stereo: leave out the right eye's tiles the left eye's strokes would cover (needs "
                             "--source scene; default off)")
    parser.add_argument("--broker", metavar="ENDPOINT",
                        help="use the workers of the broker at ENDPOINT instead of starting any")
    add_curve_arguments(parser, default_name="client")
    add_codec_arguments(parser)
    parser.add_argument("--out", type=output_folder, default=Path("bench-results"), metavar="DIR",
                        help="where NAME.json, NAME.md and NAME.png go (default bench-results)")
    parser.add_argument("--name", default=settings.BENCH_NAME, help=f"file name stem (default {settings.BENCH_NAME})")


def command_line() -> str:
    """How this run was started, for the results (``vrstyle bench ...`` or the script)."""
    program = Path(sys.argv[0])
    prog = "vrstyle" if program.name in ("vrstyle", "cli.py", "__main__.py") else f"python {sys.argv[0]}"
    return " ".join([prog, shlex.join(sys.argv[1:])]).strip()


def run(args: argparse.Namespace) -> int:
    from vrstyle.bench import BenchConfig, run_benchmark, table, write_outputs

    if args.broker and args.workers != [1]:
        raise VrstyleError("--workers is for workers started here; with --broker its workers are used")
    name, shape = args.eye_size
    config = BenchConfig(eye=name, eye_shape=shape, eyes=1 if args.mono else 2, tile=args.tile, halo=args.halo,
                         overlap=args.overlap, workers=args.workers, devices=args.device or ["cpu"],
                         style=args.style, fp16=args.fp16, compile=args.compile, frames=args.frames,
                         warmup=args.warmup, rate=args.rate, deadline_ms=args.deadline, source=args.source,
                         broker=args.broker, curve=args.curve, key_name=args.key_name, threads=args.threads,
                         request_tiles=args.request_tiles, depth=args.depth, data_path=args.data_path,
                         payload=args.payload, codec=args.codec, quality=args.quality,
                         stitch=(args.stitch or ("none" if args.data_path else "cpu")) == "cpu", foveation=args.foveation,
                         rings=args.rings, consistency=args.consistency)
    result = run_benchmark(config, progress=None, command=command_line())
    print(table(result))
    paths = write_outputs(result, args.out, args.name)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
