"""Build the cartoon student, evaluate it against the refined teacher, time both: card and results.

    python benchmarks/ship_cartoon.py --steps 6000 --threads 2

The student is the White-box generator at half width with two residual blocks, cut from the
teacher (``--init prune``) and distilled on the teacher's *guided-filtered* output, so it
runs without the filter. It is not shipped inside the package (the teacher's authors ask for
non-commercial use, the package is Apache-2.0): this script, or the ``vrstyle distill`` line it
prints, builds it (``--output``, default ``runs/cartoon.safetensors``) with its model card beside
it. Results: ``benchmarks/results/cartoon-student.{json,md}`` (fidelity on held-out photos,
and CPU seconds per 768x512 frame of the teacher with and without its filter and of the
student, timed in alternation in one run). Resumable: a finished run folder is not trained again.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from vrstyle.models import load_model
from vrstyle.models.cartoon import CartoonNet
from vrstyle.train.distill import DistillConfig, distill, export
from vrstyle.train.evaluate import SPEED_SIZE, TeacherCache, arithmetic, evaluate

RESULTS = Path(__file__).parent / "results"

CARD = """# cartoon/student: White-box Cartoonization distilled with its guided filter learned

**Non-commercial use only.** The teacher, the White-box Cartoonization generator of Wang and Yu
(CVPR 2020, `teachers/cartoon/whitebox.pth` in the shared data), is released by its authors for
non-commercial use, and this network is derived from it. For that reason vrstyle does not ship
it inside its Apache-2.0 package; it is built on the user's machine with one command (below).

## Network
The teacher's generator (TensorFlow 'SAME' padding, leaky ReLU 0.2) at width {width} (teacher 32)
with {blocks} residual blocks (teacher 4): {params:,} parameters (teacher 1,467,075), {macs:.0f} K
multiply-adds per pixel (teacher {teacher_macs:.0f} K), full precision, stored fp16 ({size_kb:.0f} KB).
No guided filter at inference: the student is trained on the filtered output and learns its effect.

## Recipe
- Initialisation: pruned from the teacher (its first {blocks} blocks; in every group of channels
  that skips and the residual stream tie together, those with the largest filters).
- {steps} Adam steps (batch {batch}, {crop} px random crops and flips of BSDS500 train+val, lr
  {lr}); loss: mean squared error to the teacher's output after its guided filter (radius 1,
  eps 5e-3) and clamp{colour}.
- Command: `{command}`

## Budget and device
{seconds:.0f} s ({minutes:.0f} minutes) of training on a **CPU** ({machine}), no GPU.

## Metrics (against the refined teacher, full-size held-out photos)
{metrics}

## Speed (CPU, one {frame} frame, median of {repeats}, timed in alternation)
- teacher + guided filter: {teacher_s:.3f} s; teacher without it: {raw_s:.3f} s
- student: {student_s:.3f} s: **{speedup:.2f}x** the teacher with its filter
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--colour", default="none", help="none, or luminance: targets keep the photo's colours")
    parser.add_argument("--limit", type=int, default=6, help="evaluation photos per set")
    parser.add_argument("--sets", default="kodak24,bsds500/test")
    parser.add_argument("--repeats", type=int, default=7, help="timed frames per network")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run", default="runs/cartoon")
    parser.add_argument("--output", default="runs/cartoon.safetensors")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = DistillConfig(teacher="cartoon", arch="cartoon", config={"width": args.width, "blocks": args.blocks},
                        init="prune", steps=args.steps, batch=4, crop=args.crop, lr=args.lr, colour=args.colour)
    distill_line = ("vrstyle distill --teacher cartoon --student cartoon --config "
                    f"'{json.dumps(cfg.config)}' --init prune --steps {cfg.steps} --crop {cfg.crop} --lr {cfg.lr} "
                    f"--colour {cfg.colour} --run {args.run} --output {args.output}")
    print(f"the same student with vrstyle alone: {distill_line}", flush=True)
    student = distill(cfg, Path(args.run), progress=True)
    output = Path(args.output)
    size = export(student, cfg, output, "cartoon/student")
    model = load_model(str(output))
    teacher = load_model("cartoon/teacher")
    cache = TeacherCache(Path(args.run).parent / "teacher-cache", "cartoon", teacher)
    sets = tuple(args.sets.split(","))
    report = evaluate(model, "cartoon/student", size, cache, sets, args.limit, progress=True)
    raw = CartoonNet(refine=False)
    raw.load_state_dict(teacher.state_dict())
    speed = alternate_timing({"teacher": teacher, "raw": raw.eval(), "student": model}, args.repeats)
    seconds = torch.load(Path(args.run) / "checkpoint.pt", map_location="cpu", weights_only=False)["seconds"]
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    machine = f"{platform.machine()}, {args.threads} torch thread(s), 2-core machine"
    metrics = [f"- All {report.images} photos: PSNR {report.psnr:.2f} dB, SSIM {report.ssim:.3f}, "
               f"VGG relu3_1 distance {report.vgg_distance:.3f}"]
    metrics += [f"- {name}: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}" for name, m in report.per_set.items()]
    card = CARD.format(
        width=args.width, blocks=args.blocks, params=sum(p.numel() for p in model.parameters()),
        macs=arithmetic(model).total_macs / 1000, teacher_macs=arithmetic(teacher).total_macs / 1000,
        size_kb=output.stat().st_size / 1000, steps=cfg.steps, batch=cfg.batch, crop=cfg.crop, lr=cfg.lr,
        colour="" if cfg.colour == "none" else ", its colours moved back towards the photo's (luminance transfer)",
        command=distill_line, seconds=seconds, minutes=seconds / 60, machine=machine, metrics="\n".join(metrics),
        frame=f"{SPEED_SIZE[1]}x{SPEED_SIZE[0]}", repeats=args.repeats, teacher_s=speed["teacher"],
        raw_s=speed["raw"], student_s=speed["student"], speedup=speed["teacher"] / speed["student"])
    output.with_suffix(".md").write_text(card)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cartoon-student.md").write_text(f"{card}\nResults command: `{command}`\n")
    (RESULTS / "cartoon-student.json").write_text(json.dumps(
        {"command": command, "machine": machine, "recipe": asdict(cfg), "training_seconds": seconds,
         "model": report.as_dict(), "cpu_seconds_per_frame": speed}, indent=2) + "\n")
    print(f"cartoon/student: {report.psnr:.2f} dB, {speed['teacher'] / speed['student']:.2f}x the teacher with "
          f"its filter, {size / 1000:.0f} KB -> {output}", flush=True)
    return 0


def alternate_timing(models: dict[str, torch.nn.Module], repeats: int) -> dict[str, float]:
    """Median seconds per frame of each model, timed round by round so drifts in load hit all alike."""
    x = torch.rand(1, 3, *SPEED_SIZE) * 255
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(x)  # warm-up at full size: allocator and kernels
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


if __name__ == "__main__":
    sys.exit(main())
