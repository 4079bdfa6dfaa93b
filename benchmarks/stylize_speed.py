"""`vrstyle stylize` against the plain network it wraps: wall time and peak memory, side by side.

    python benchmarks/stylize_speed.py --style candy/teacher --out benchmarks/results/stylize-speed

Each case runs in a fresh process (peak resident memory is the process's own, import and model
load included in all): the plain network is what a pytorch/examples user does (load the
teacher's weights into a TransformerNet written as fast_neural_style writes it: torch's
InstanceNorm2d, ReLU modules, upsampling then padding; one forward pass over the whole image);
the same teacher in vrstyle's own network class, run bare, is the leaner reference beside it
(in-place ReLUs); `vrstyle stylize` runs with its defaults (whole image in one pass when it fits
``--memory``) and, as the path it replaces, forced to 512 px tiles. Cases are interleaved
``--repeats`` times; medians reported.
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

import numpy as np

from vrstyle.timing import median
from vrstyle.train.data import data_dir

EXAMPLES = """
import re, sys, numpy as np, torch
from torch import nn
from PIL import Image

class ConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, upsample=False):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride)
    def forward(self, x):
        if self.upsample:
            x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv2d(self.reflection_pad(x))

class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1, self.conv2 = ConvLayer(channels, channels, 3), ConvLayer(channels, channels, 3)
        self.in1, self.in2 = nn.InstanceNorm2d(channels, affine=True), nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()
    def forward(self, x):
        return x + self.in2(self.conv2(self.relu(self.in1(self.conv1(x)))))

class TransformerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.in1 = ConvLayer(3, 32, 9), nn.InstanceNorm2d(32, affine=True)
        self.conv2, self.in2 = ConvLayer(32, 64, 3, 2), nn.InstanceNorm2d(64, affine=True)
        self.conv3, self.in3 = ConvLayer(64, 128, 3, 2), nn.InstanceNorm2d(128, affine=True)
        for i in range(1, 6):
            setattr(self, f"res{i}", ResidualBlock(128))
        self.deconv1, self.in4 = ConvLayer(128, 64, 3, upsample=True), nn.InstanceNorm2d(64, affine=True)
        self.deconv2, self.in5 = ConvLayer(64, 32, 3, upsample=True), nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ConvLayer(32, 3, 9)
        self.relu = nn.ReLU()
    def forward(self, x):
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)

torch.set_num_threads(int(sys.argv[3]))
state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
net = TransformerNet()
net.load_state_dict({k: v for k, v in state.items() if not re.search(r"in\\d+\\.running_(mean|var)$", k)})
net.eval()
image = np.asarray(Image.open(sys.argv[2]).convert("RGB"))
with torch.no_grad():
    out = net(torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float())
Image.fromarray(out[0].clamp(0, 255).round().byte().permute(1, 2, 0).numpy()).save(sys.argv[4])
"""
"""fast_neural_style's network and its stylize step, written out (the teachers are its weights)."""

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
    cases = {}
    teacher = data_dir() / "teachers" / "johnson" / (args.style.removesuffix("/teacher") + ".pth")
    if args.style.endswith("/teacher") and teacher.is_file():
        cases["plain network (pytorch/examples' TransformerNet), whole image"] = [
            sys.executable, "-c", EXAMPLES, str(teacher), str(photo), str(args.threads), str(work / "examples.png")]
    cases["the same network in vrstyle's class, run bare, whole image"] = [
        sys.executable, "-c", PLAIN, args.style, str(photo), str(args.threads), str(work / "plain.png")]
    cases.update({
        "vrstyle stylize (defaults)": cli + [str(photo), str(work / "auto.png")],
        "vrstyle stylize --tile 512 (the tiled path before)": cli + ["--tile", "512", str(photo), str(work / "tiled.png")]})
    runs: dict[str, list[tuple[float, float]]] = {key: [] for key in cases}
    for _ in range(args.repeats):
        for key, command in cases.items():
            runs[key].append(measure(command, args.threads))
    width, height = Image.open(photo).size
    pictures = {key: np.asarray(Image.open(command[-1]), dtype=np.int16) for key, command in cases.items()}
    reference = next(iter(pictures.values()))
    rows = [(key, median(w for w, _ in runs[key]), median(p for _, p in runs[key]),
             min(p for _, p in runs[key]), max(p for _, p in runs[key]),
             np.abs(pictures[key] - reference).max(), (pictures[key] != reference).mean()) for key in cases]
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
             f"included); wall time and peak resident memory the medians of {args.repeats} interleaved runs, "
             "the peak's range beside it (a process's peak varies from run to run by tens of MB); each "
             "picture against the first case's: the largest difference in grey levels and the share of "
             "values that differ.", "",
             "| case | wall s | vs plain | peak MB | vs plain | peak range MB | picture: max diff | differing |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {key} | {wall:.2f} | {wall / plain_wall:.2f}x | {peak * 1e3:.0f} | {peak / plain_peak:.3f}x | "
              f"{low * 1e3:.0f}-{high * 1e3:.0f} | {diff} | {share:.4%} |"
              for key, wall, peak, low, high, diff, share in rows]
    lines += [f"| {key} (one run) | {wall:.1f} | - | {peak * 1e3:.0f} | - | - | - | - |" for key, wall, peak in big_rows]
    print("\n".join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".md").write_text("\n".join(lines) + "\n")
        Path(args.out + ".json").write_text(json.dumps(
            {"command": command_line, "style": args.style, "photo": args.photo, "threads": args.threads,
             "cases": {key: [{"wall_s": w, "peak_gb": p} for w, p in runs[key]] for key in cases},
             "pictures": {row[0]: {"max_diff": int(row[5]), "differing": float(row[6])} for row in rows},
             "big": [{"case": key, "wall_s": wall, "peak_gb": peak} for key, wall, peak in big_rows]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
