"""Start one style worker per GPU (or N CPU workers) and keep them running.

A worker that exits is restarted after a growing delay
(:meth:`~vrstyle.transport.cluster.LocalCluster.supervise`); SIGTERM or Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse

from vrstyle import settings
from vrstyle.commands._common import positive_int, stop_on_signals
from vrstyle.commands.worker import add_worker_arguments
from vrstyle.errors import VrstyleError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", default=settings.BROKER_WORKERS, metavar="ENDPOINT",
                        help=f"the broker's worker endpoint (default {settings.BROKER_WORKERS})")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--gpus", help="'all' or a list of GPU indices, e.g. 0,1: one worker each")
    which.add_argument("--cpu", type=positive_int, metavar="N", help="N workers on the CPU")
    add_worker_arguments(parser)


def devices(gpus: str | None, cpu: int | None) -> list[str]:
    """The device of each worker to start."""
    if cpu is not None:
        return ["cpu"] * cpu
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible == 0:
        raise VrstyleError("no CUDA GPU is visible on this machine; use --cpu N for CPU workers")
    if gpus == "all":
        return [f"cuda:{i}" for i in range(visible)]
    try:
        indices = [int(part) for part in gpus.split(",")]
    except ValueError:
        raise VrstyleError(f"--gpus takes 'all' or indices like 0,1, got {gpus!r}") from None
    for index in indices:
        if not 0 <= index < visible:
            raise VrstyleError(f"GPU {index} requested but only {visible} visible (0..{visible - 1})")
    return [f"cuda:{i}" for i in indices]


def worker_args(args: argparse.Namespace) -> list[str]:
    """The `vrstyle worker` options beyond those LocalCluster passes itself (broker, device,
    heartbeat, styles, threads)."""
    argv = ["--credit", str(args.credit), "--batch-tiles", str(args.batch_tiles), "--batch-window",
            str(args.batch_window), "--halo", str(args.halo), "--overlap", str(args.overlap)]
    for shape in args.warmup:
        argv += ["--warmup", shape]
    for option in ("fp16", "compile"):
        if getattr(args, option) is not None:
            argv.append(f"--{'' if getattr(args, option) else 'no-'}{option}")
    if args.reference:
        argv.append("--reference")
    if args.curve:
        argv += ["--curve", args.curve, "--key-name", args.key_name]
    return argv


def run(args: argparse.Namespace) -> int:
    from vrstyle.models import resolve_model
    from vrstyle.transport.cluster import LocalCluster
    from vrstyle.transport.security import peer_keys

    targets = devices(args.gpus, args.cpu)
    styles = args.style or [settings.DEFAULT_STYLE]
    for style in styles:  # mistakes once here, not in every worker forever
        resolve_model(style)
    for shape in args.warmup:
        settings.parse_size(shape, "--warmup")
    if args.curve:
        peer_keys(args.curve, args.key_name)
    stop = stop_on_signals()
    with LocalCluster(styles, len(targets), devices=targets, heartbeat_s=args.heartbeat, threads=args.threads,
                      worker_args=worker_args(args), broker=args.broker, logs=False) as cluster:
        cluster.supervise(stop)
    return 0
