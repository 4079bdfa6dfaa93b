"""Compare models with their teacher on held-out photos: PSNR, SSIM, VGG distance, size, ops, CPU speed.

Writes ``<out>.json`` (every number), ``<out>.md`` (the table and the command) and
``<out>.png`` (PSNR against file size, and the first photo as each model stylises it).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from vrstyle import settings
from vrstyle.commands._checks import output_folder, output_prefix
from vrstyle.commands._common import positive_int
from vrstyle.errors import VrstyleError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help="model names (candy/teacher, candy/binary) or model files")
    parser.add_argument("--teacher", default=settings.DEFAULT_STYLE, help="style whose teacher is the reference")
    parser.add_argument("--sets", default="kodak24,bsds500/test", help="held-out photo sets, comma separated")
    parser.add_argument("--limit", type=positive_int, default=None, help="use the first N photos of each set")
    parser.add_argument("--labels", default=None, help="table labels for the models, comma separated")
    parser.add_argument("--speed", action="store_true", help="time one 768x512 frame on the CPU per model")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    parser.add_argument("--cache", type=output_folder, default="runs/teacher-cache", help="folder for cached teacher outputs")
    parser.add_argument("--out", type=output_prefix, required=True, help="output prefix, e.g. benchmarks/results/distill-candy")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from vrstyle.models.fast import use_fast_kernels
    from vrstyle.models import load_model, resolve_model
    from vrstyle.train.data import photo_paths
    from vrstyle.train.evaluate import (TeacherCache, cpu_seconds, eval_photo, evaluate, photo_key,
                                        reference_report)
    from vrstyle.train.report import write_report

    if args.threads:
        torch.set_num_threads(args.threads)
    labels = args.labels.split(",") if args.labels else None
    if labels and len(labels) != len(args.models):
        raise VrstyleError(f"{len(labels)} labels for {len(args.models)} models")
    sets = tuple(s for s in args.sets.split(",") if s)
    out = args.out
    specs = [resolve_model(name) for name in args.models]
    teacher = TeacherCache(Path(args.cache), args.teacher, load_model(f"{args.teacher}/teacher"))
    print(f"vrstyle eval: teacher outputs cached in {teacher.folder} (--cache to move)", file=sys.stderr)
    first = photo_paths(sets, args.limit)[0]
    reports, grid = [], []
    for index, spec in enumerate(specs):
        label = labels[index] if labels else spec.name
        model = spec.load()
        if spec.name == f"{args.teacher}/teacher":  # the reference itself: no need to stylise again
            report = reference_report(model, label, spec.path.stat().st_size)
        else:
            keep: dict = {}
            report = evaluate(model, label, spec.path.stat().st_size, teacher, sets, args.limit, keep=keep)
            grid.append((label, keep[photo_key(first)]))
        if args.speed:
            report.cpu_seconds_per_frame = cpu_seconds(model)
            if report.cost["binary_ops"]:
                report.popcount_seconds_per_frame = cpu_seconds(use_fast_kernels(model), repeats=1)
        reports.append(report)
        log.info("%s: %.2f dB", label, report.psnr)
    photo = eval_photo(first)
    grid = [("photo", photo), ("teacher", teacher.output(first, photo))] + grid
    command = "vrstyle " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_report(out, reports, grid, args.teacher, sets, args.limit, command, torch.get_num_threads())
    for r in reports:
        print(f"{r.name}: " + ("reference" if r.psnr == float("inf") else f"{r.psnr:.2f} dB, SSIM {r.ssim:.3f}"))
    return 0
