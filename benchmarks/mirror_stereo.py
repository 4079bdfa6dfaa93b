"""`vrstyle mirror --consistency stereo` on the demo scene: how far the eyes agree, with and without.

    xvfb-run -a python benchmarks/mirror_stereo.py --out benchmarks/results/mirror-stereo

Runs the mirror (workers, tiles, GPU compositor) twice, with ``--consistency off`` and
``stereo``, and reads back the last frame each dumps: the eyes as shown, the scene's depth and
poses, the tiles not stylised. Left/right warp error (:func:`vrstyle.reproject.warp_error`,
exact correspondence from depth) of the raw render, of the eyes stylised independently and of
the eyes with stereo consistency; ``<out>.png``: left | right | anaglyph | warped difference of each.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import tiles
from comfort import anaglyph
from vrstyle.reproject import View, correspondence, sample, warp_error


def figure(shown: dict[str, tuple[np.ndarray, list[View]]], path: Path) -> None:
    """Per row (eyes, their views): left | right | anaglyph | how far the right eye, warped into the left, differs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(shown), 4, figsize=(12, 3.1 * len(shown)), squeeze=False)
    for row, (name, (eyes, views)) in zip(axes, shown.items()):
        pixels, seen = correspondence(views[0], views[1])
        difference = np.abs(sample(eyes[1], pixels) - eyes[0]).mean(-1) * seen
        for axis, image, title in zip(row, (eyes[0], eyes[1], anaglyph(eyes), difference),
                                      ("left", "right", "anaglyph", "|left - right warped|, 0..40")):
            axis.imshow(image, cmap="magma", vmin=0, vmax=40) if image.ndim == 2 else axis.imshow(image)
            axis.set_title(f"{name}: {title}", fontsize=8)
            axis.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_mirror(args: argparse.Namespace, consistency: str, folder: Path) -> tuple[list[str], str, dict]:
    """One mirror run: its command line, its last log line and its frame dump."""
    dump = folder / f"{consistency}.npz"
    command = ["vrstyle", "mirror", "--style", args.style, "--eye-size", args.eye_size, *shlex.split(args.tiles),
               "--consistency", consistency, "--frames", str(args.frames)]
    done = subprocess.run([sys.executable, "-m", "vrstyle.cli", *command[1:], "--dump", str(dump)],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr)
    return command, done.stderr.strip().splitlines()[-1], dict(np.load(dump))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="candy")
    parser.add_argument("--eye-size", default="640x720")
    parser.add_argument("--tiles", default="", help="the mirror's tile options, e.g. '--tile 64 --halo 16'")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--out", required=True, help="output prefix (.json, .md, .png)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs = {consistency: run_mirror(args, consistency, Path(folder)) for consistency in ("off", "stereo")}
    (off_command, off_line, off), (command, line, frame) = runs["off"], runs["stereo"]
    grid = tiles.TileGrid(*map(int, frame["grid"]))
    views = {name: [View(run[2]["views"][e], run[2]["projections"][e], run[2]["depth"][e]) for e in (0, 1)]
             for name, run in runs.items()}
    shown = {"raw": (frame["raw"], views["stereo"]),
             f"{args.style}, each eye on its own": (off["stylized"], views["off"]),
             f"{args.style}, --consistency stereo": (frame["stylized"], views["stereo"])}
    errors = {name: warp_error(eyes[0], eyes[1], *eye_views) for name, (eyes, eye_views) in shown.items()}
    skipped = len(frame["skipped"]) / (2 * len(grid))
    command_line = "xvfb-run -a python " + " ".join(shlex.quote(a) for a in sys.argv)
    raw_error = errors["raw"][0]
    lines = [f"# Stereo consistency in `vrstyle mirror`: {args.style}, demo scene {args.eye_size} per eye", "",
             f"Command: `{command_line}`", "",
             f"Two mirror runs, their frame dumps read back: `{' '.join(off_command)}` and `{' '.join(command)}`. "
             f"Left/right warp error: mean absolute difference in grey levels of the left eye and the right eye "
             f"warped into it with the exact depth, on the {100 * errors['raw'][1]:.0f}% of the left eye's "
             f"pixels the right eye sees. Each run's last frame, at its own scene time.", "",
             "| eyes | left/right warp error | x raw |", "|---|---|---|"]
    lines += [f"| {name} | {error:.2f} | {error / raw_error:.1f}x |" for name, (error, _) in errors.items()]
    lines += ["", f"The stereo run reported `{line}`: {len(frame['skipped'])} of {2 * len(grid)} tiles "
                  f"({grid.rows}x{grid.cols} per eye) not stylised ({100 * skipped:.0f}%). The other: `{off_line}`."]
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{out}.json").write_text(json.dumps({"command": command_line, "runs": [off_command, command],
                                               "errors": errors, "skipped_share": skipped}, indent=1) + "\n")
    figure(shown, Path(f"{out}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
