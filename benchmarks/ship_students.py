"""Train, evaluate and ship the binary students: one model file and one model card per style.

    python benchmarks/ship_students.py --styles candy,mosaic --limit 6

For each style: ``vrstyle distill --init blockwise`` (block-wise training on cached teacher
features, then ``--steps`` end to end with the stability term),
export to ``vrstyle/models/weights/<style>-binary.safetensors``, evaluation against the
teacher on held-out photos (written to ``benchmarks/results/binary-<style>.{json,md,png}``)
and the model card ``<style>-binary.md`` beside the weights. Resumable: a style whose run
folder already holds a finished checkpoint is not trained again.

``--continue`` gives the shipped students ``--steps`` more end-to-end steps on a cosine
schedule (``vrstyle distill --init <student file> --schedule cosine``), starting from a copy
of each shipped file kept in the runs folder, and ships the result with a card that names both
stages and their time together.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shlex
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch
from safetensors import safe_open

from vrstyle import settings
from vrstyle.models import load_model
from vrstyle.models.registry import SHIPPED_DIR, STYLES
from vrstyle.train.distill import DistillConfig, distill, export
from vrstyle.train.evaluate import Report, TeacherCache, cpu_seconds, evaluate
from vrstyle.train.report import table

RESULTS = Path(__file__).parent / "results"

CARD = """# {style}/binary: binarized {style} style network

A student of the Johnson et al. {style} teacher (`teachers/johnson/{style}.pth` in the shared
data) with the teacher's topology and **1-bit weights{bases} and {planes}-plane binary activations in
the ten residual-block convolutions** (AND + popcount arithmetic: `vrstyle/kernels/bconv.py` on CPUs),
learnable per-channel thresholds (RSign) and weight scales; the residual stream, the instance
norms, the encoder (`conv1`-`conv3`) and the decoder (`deconv1`-`deconv3`) stay full precision
(stored fp16). Binary weights are stored bit-packed (1 bit each plus one scale per output
channel). File: {size_kb:.0f} KB ({sizes}).

## Recipe
- Initialisation: the teacher's weights as latent weights; activation thresholds fitted to the
  data (a per-channel Lloyd-Max quantizer of each convolution's own input).
- Block-wise stage: the teacher's residual stream cached at every block boundary over
  {calibration_images} whole BSDS500 training photos (per-image statistics); each student block
  trained for {block_steps} Adam steps (batch {block_batch}, lr {block_lr}, cosine decay) to map the
  student's own stream after the blocks before it to the teacher's stream after the same block.
- End-to-end stage: {steps} Adam steps{sgd}, encoder frozen; loss: MSE to the teacher's output
  plus {noise} x the stability term (output change under uniform ±1 grey-level input noise).
{continued}- Command: `{command}`

## Data
Training: BSDS500 train+val (block-wise: {calibration_images} whole photos, seed {seed}; end to end:
random crops and flips). Evaluation: held out, never trained on: {eval_sets}.

## Budget and device
{seconds:.0f} s ({minutes:.0f} minutes) of training on a **CPU** ({machine}; a 2-core machine shared
with other jobs), no GPU. `vrstyle distill ... --device cuda` runs the same recipe on a GPU, where
more block-wise and end-to-end steps are what to buy.

## Metrics (against the teacher, full-size photos, per-image statistics)
{metrics}

Arithmetic per output pixel and CPU time: `benchmarks/results/binary-{style}.md`; the comparison
with the teacher and other students (candy): `benchmarks/results/distill-candy.md`.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", default=",".join(STYLES))
    parser.add_argument("--photos", type=int, default=128, help="whole photos for the block-wise features")
    parser.add_argument("--block-steps", type=int, default=200)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--planes", type=int, default=3)
    parser.add_argument("--weight-bases", type=int, default=1, help="binary weight bases per body convolution")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--limit", type=int, default=6, help="evaluation photos per set")
    parser.add_argument("--sets", default="kodak24,bsds500/test")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--continue", dest="continued", action="store_true",
                        help="continue the shipped students: --steps more end-to-end steps, cosine schedule")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sets = tuple(args.sets.split(","))
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    machine = f"{platform.machine()}, {args.threads} torch thread(s)"
    for style in args.styles.split(","):
        path = SHIPPED_DIR / f"{style}-binary.safetensors"
        continued = None
        if args.continued:
            base, base_seconds, continued = continued_recipe(style, path, Path(args.runs), args)
            run_dir = Path(args.runs) / f"{style}-continued"
        else:
            base = student_recipe(style, args)
            run_dir = Path(args.runs) / (f"{style}-blockwise" + (f"-bases{args.weight_bases}" if args.weight_bases > 1 else ""))
        student = distill(continued or base, run_dir, progress=True)
        seconds = run_seconds(run_dir) + (base_seconds if continued else 0.0)
        size = export(student, continued or base, path, f"{style}/binary")
        model = load_model(str(path))  # evaluate what ships, as it loads
        teacher = TeacherCache(Path(args.runs) / "teacher-cache", style, load_model(f"{style}/teacher"))
        report = evaluate(model, f"{style}/binary", size, teacher, sets, args.limit, progress=True)
        report.cpu_seconds_per_frame = cpu_seconds(model, repeats=1)
        write_results(style, report, command, machine)
        write_card(style, path, report, base, seconds, command, machine, sets, args.limit, continued)
        print(f"{style}: {report.psnr:.2f} dB, {size / 1000:.0f} KB, {seconds:.0f} s", flush=True)
    return 0


def student_recipe(style: str, args: argparse.Namespace) -> DistillConfig:
    """The shipped students' recipe (the same as ``vrstyle distill --init blockwise`` with these settings)."""
    return DistillConfig(teacher=style, arch="student",
                         config={"layers": {"body": "binary"}, "planes": args.planes, "learned_scale": True,
                                 **({"weight_bases": args.weight_bases} if args.weight_bases > 1 else {})},
                         init="blockwise", calibration_images=args.photos, block_steps=args.block_steps,
                         steps=args.steps, batch=4, crop=192, lr=3e-4, noise=args.noise, seed=0)


def continued_recipe(style: str, shipped: Path, runs: Path,
                     args: argparse.Namespace) -> tuple[DistillConfig, float, DistillConfig]:
    """The shipped student's recipe and training seconds (from its file and card, kept in ``runs``
    the first time), and the recipe that continues it."""
    start = runs / f"{style}-before-continued.safetensors"
    if not start.is_file():
        runs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped, start)
        shutil.copyfile(shipped.with_suffix(".md"), start.with_suffix(".md"))
    with safe_open(str(start), "pt") as handle:
        meta = handle.metadata()
    base = DistillConfig(arch=meta["arch"], config=json.loads(meta["config"]), **json.loads(meta["recipe"]))
    spent = re.search(r"^(\d+) s \(\d+ minutes\) of training", start.with_suffix(".md").read_text(), re.MULTILINE)
    if spent is None:
        raise SystemExit(f"{start.with_suffix('.md')} does not say how long its student trained")
    return base, float(spent[1]), replace(base, init=str(start), block_steps=0, steps=args.steps, schedule="cosine",
                                          noise=args.noise)


def run_seconds(run_dir: Path) -> float:
    """Seconds the run has spent training, over all its sessions (from its checkpoint)."""
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False).get("seconds", 0.0)


def write_results(style: str, report: Report, command: str, machine: str) -> None:
    out = RESULTS / f"binary-{style}"
    out.with_suffix(".json").write_text(json.dumps({"command": command, "machine": machine,
                                                    "model": report.as_dict()}, indent=2) + "\n")
    out.with_suffix(".md").write_text(f"# {style}/binary against its teacher\n\n{table([report])}\n\n"
                                      f"Command ({machine}):\n\n```\n{command}\n```\n")


def write_card(style: str, path: Path, report: Report, cfg: DistillConfig, seconds: float, command: str,
               machine: str, sets: tuple[str, ...], limit: int | None, continued: DistillConfig | None = None) -> None:
    from safetensors.torch import load_file

    from vrstyle.models.packed import size_report

    sizes = ", ".join(f"{kind} {n / 1000:.0f} KB" for kind, n in size_report(load_file(str(path))).items())
    metrics = [f"- All {report.images} photos: PSNR {report.psnr:.2f} dB, SSIM {report.ssim:.3f}, "
               f"VGG relu3_1 distance {report.vgg_distance:.3f}"]
    metrics += [f"- {name}: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}" for name, m in report.per_set.items()]
    eval_sets = ", ".join(f"{s} (first {limit})" if limit else s for s in sets)
    sgd = f" (batch {cfg.batch}, {cfg.crop} px crops, lr {cfg.lr}, VGG weight {cfg.vgg_weight})"
    more = "" if continued is None else (
        f"- Continued: {continued.steps} more end-to-end steps from that student (`--init` its file), the same loss "
        f"with {continued.noise} x the stability term, lr {continued.lr} on a cosine schedule down to 0.\n")
    path.with_suffix(".md").write_text(CARD.format(
        style=style, size_kb=path.stat().st_size / 1000, sizes=sizes, planes=cfg.config["planes"],
        bases=_bases(cfg.config.get("weight_bases", 1)),
        block_steps=cfg.block_steps, block_batch=cfg.block_batch, block_lr=cfg.block_lr, steps=cfg.steps, sgd=sgd,
        noise=cfg.noise, continued=more, command=command, calibration_images=cfg.calibration_images, seed=cfg.seed,
        eval_sets=eval_sets, seconds=seconds, minutes=seconds / 60, machine=machine, metrics="\n".join(metrics)) + f"\nRecipe as stored: `{json.dumps(asdict(continued or cfg))}`\n")
    assert path.stat().st_size <= settings.MODEL_FILE_LIMIT, f"{path} is over the size limit"


def _bases(count: int) -> str:
    return "" if count == 1 else (f" ({count} binary bases per weight: each convolution a binary one {count} times "
                                  f"as wide whose groups of {count} are summed, initialised from the teacher's "
                                  "weight and the errors its signs leave)")


if __name__ == "__main__":
    sys.exit(main())
