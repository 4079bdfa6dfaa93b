"""`vrstyle stylize` against the plain network it wraps: wall time and peak memory, side by side.

    python benchmarks/stylize_speed.py --style candy/teacher --out benchmarks/results/stylize-speed

Each case runs in a fresh process (peak resident memory is the process's own, import and model
load included in both): the plain network is what a pytorch/examples user does (load the
model, one forward pass over the whole image, per-image InstanceNorm); `vrstyle stylize` runs
with its defaults (whole image in one pass when it fits ``--memory``) and, as the path it
replaces, forced to 512 px tiles. Cases are interleaved ``--repeats`` times; medians reported.
A ``--big`` image (default 4000x3000, the photo upscaled) shows the memory bound of the tiled path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vrstyle.timing import median
from vrstyle.train.data import data_dir

PLAIN = """
import sys, numpy as np, torch
from PIL import Image
from vrstyle.models import resolve_model
torch.set_num_threads(int(sys.argv[3]))
net = resolve_model(sys.argv[1]).load().eval()
image = np.asarray(Image.open(sys.argv[2]).convert("RGB"))
with torch.no_grad():
    out = net(torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float())
Image.fromarray(out[0].clamp(0, 255).round().byte().permute(1, 2, 0).numpy()).save(sys.argv[4])
"""


def measure(command: list[str], threads: int) -> tuple[float, float]:
    """(wall seconds, peak resident GB) of ``command``, run by a wrapper process of its own: the
    children's peak (RUSAGE_CHILDREN) is a running maximum, so each run needs a fresh parent."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *command], env=dict(os.environ, OMP_NUM_THREADS=str(threads)),
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{shlex.join(command[:6])} ... failed: {done.stderr.strip().splitlines()[-1:]}")
    return wall, int(done.stdout.strip()) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="candy/teacher")
    parser.add_argument("--photo", default="content/tubingen.jpg", help="under the shared data folder")
    parser.add_argument("--big", default="4000x3000", help="WxH of the upscaled photo for the memory bound ('' skips)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="output prefix (.json, .md)")
    args = parser.parse_args()
    from PIL import Image

    photo = data_dir() / args.photo
    work = Path(tempfile.mkdtemp(prefix="stylize-speed-"))
    cli = [sys.executable, "-m", "vrstyle.cli", "stylize", "--style", args.style]
    cases = {"plain network, whole image": [sys.executable, "-c", PLAIN, args.style, str(photo), str(args.threads),
                                            str(work / "plain.png")],
             "vrstyle stylize (defaults)": cli + [str(photo), str(work / "auto.png")],
             "vrstyle stylize --tile 512 (the tiled path before)": cli + ["--tile", "512", str(photo),
                                                                        str(work / "tiled.png")]}
    runs: dict[str, list[tuple[float, float]]] = {key: [] for key in cases}
    for _ in range(args.repeats):
        for key, command in cases.items():
            runs[key].append(measure(command, args.threads))
    width, height = Image.open(photo).size
    rows = [(key, median(w for w, _ in runs[key]), max(p for _, p in runs[key])) for key in cases]
    big_rows = []
    if args.big:
        big_w, big_h = (int(v) for v in args.big.lower().split("x"))
        big = work / "big.png"
        Image.open(photo).convert("RGB").resize((big_w, big_h), Image.BICUBIC).save(big)
        big_rows.append((f"vrstyle stylize (defaults), {big_w}x{big_h}",
                         *measure(cli + [str(big), str(work / "big-out.png")], args.threads)))
    plain_wall, plain_peak = rows[0][1], rows[0][2]
    command_line = "python " + shlex.join(sys.argv)
    lines = [f"# `vrstyle stylize` against the plain network: {args.style}, {width}x{height} photo", "",
             f"Command: `{command_line}`", "",
             f"{platform.machine()}, {args.threads} threads; each case a fresh process (imports and model load "
             f"included); wall time the median of {args.repeats} interleaved runs, peak resident memory the largest of them.", "",
             "| case | wall s | vs plain | peak GB | vs plain |", "|---|---|---|---|---|"]
    lines += [f"| {key} | {wall:.2f} | {wall / plain_wall:.2f}x | {peak:.2f} | {peak / plain_peak:.2f}x |"
              for key, wall, peak in rows]
    lines += [f"| {key} (one run) | {wall:.1f} | - | {peak:.2f} | - |" for key, wall, peak in big_rows]
    print("\n".join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".md").write_text("\n".join(lines) + "\n")
        Path(args.out + ".json").write_text(json.dumps(
            {"command": command_line, "style": args.style, "photo": args.photo, "threads": args.threads,
             "cases": {key: [{"wall_s": w, "peak_gb": p} for w, p in runs[key]] for key in cases},
             "big": [{"case": key, "wall_s": wall, "peak_gb": peak} for key, wall, peak in big_rows]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
