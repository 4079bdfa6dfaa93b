"""Start one style worker per GPU (or N CPU workers) and keep them running.

A worker that exits is restarted after a growing delay; SIGTERM or Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

from vrstyle import settings
from vrstyle.commands._common import positive_int, stop_on_signals
from vrstyle.commands.worker import add_worker_arguments
from vrstyle.errors import VrstyleError

log = logging.getLogger(__name__)

RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0


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


def worker_argv(args: argparse.Namespace, device: str) -> list[str]:
    argv = [sys.executable, "-m", "vrstyle.cli"] + ["-v"] * args.verbose
    argv += ["worker", "--broker", args.broker, "--device", device, "--credit", str(args.credit),
             "--batch-tiles", str(args.batch_tiles), "--batch-window", str(args.batch_window),
             "--heartbeat", str(args.heartbeat), "--halo", str(args.halo), "--overlap", str(args.overlap)]
    for style in args.style or []:
        argv += ["--style", style]
    for shape in args.warmup:
        argv += ["--warmup", shape]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    for option in ("fp16", "compile"):
        if getattr(args, option) is not None:
            argv.append(f"--{'' if getattr(args, option) else 'no-'}{option}")
    if args.curve:
        argv += ["--curve", args.curve, "--key-name", args.key_name]
    return argv


def run(args: argparse.Namespace) -> int:
    from vrstyle.cli import EXIT_USER_ERROR
    from vrstyle.commands.worker import parse_shape
    from vrstyle.models import resolve_model
    from vrstyle.transport.security import peer_keys

    targets = devices(args.gpus, args.cpu)
    for style in args.style or [settings.DEFAULT_STYLE]:  # mistakes once here, not in every worker forever
        resolve_model(style)
    for shape in args.warmup:
        parse_shape(shape)
    if args.curve:
        peer_keys(args.curve, args.key_name)
    stop = stop_on_signals()
    processes: list[subprocess.Popen | None] = [None] * len(targets)
    delays = [RESTART_MIN_S] * len(targets)
    restart_at = [0.0] * len(targets)
    try:
        while not stop.is_set():
            now = time.monotonic()
            for i, device in enumerate(targets):
                process = processes[i]
                if process is not None and process.poll() == EXIT_USER_ERROR:
                    raise VrstyleError(f"the worker on {device} refused its arguments (its error is above)")
                if process is not None and process.poll() is not None:
                    log.warning("worker on %s exited with status %d; restarting in %.0f s", device,
                                process.returncode, delays[i])
                    processes[i], restart_at[i] = None, now + delays[i]
                    delays[i] = min(2 * delays[i], RESTART_MAX_S)
                if processes[i] is None and now >= restart_at[i]:
                    processes[i] = subprocess.Popen(worker_argv(args, device), stdin=subprocess.DEVNULL)
                    log.info("started worker pid %d on %s", processes[i].pid, device)
            stop.wait(0.5)
    finally:
        for process in processes:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in processes:
            if process is not None:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
    return 0
