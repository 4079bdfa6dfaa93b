"""`vrstyle mirror --consistency` on the demo scene: how far the eyes, and consecutive frames, agree.

    xvfb-run -a python benchmarks/mirror_consistency.py --out benchmarks/results/mirror-consistency

Runs the mirror (workers, tiles, GPU compositor and reprojection) with ``--consistency off`` and
with ``--consistency`` given here, and reads back the frame dump of each: the last frame and the
one shown before it, as shown and raw, with the scene's depth and poses, and the tiles not
stylised. Warp errors (:func:`vrstyle.reproject.warp_error`, exact correspondence from depth):
left/right within the last frame, and temporal, each eye of the last frame against the same eye
of the frame before. ``<out>.png``: left | right | anaglyph | warped difference, per row.
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


def views_of(frame: dict, prefix: str = "") -> list[View]:
    return [View(frame[f"{prefix}views"][e], frame[f"{prefix}projections"][e], frame[f"{prefix}depth"][e])
            for e in (0, 1)]


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


def errors_of(eyes: np.ndarray, before: np.ndarray, frame: dict) -> tuple[float, float, float]:
    """(left/right warp error, temporal warp error over both eyes, share of the left eye both eyes see)."""
    now, then = views_of(frame), views_of(frame, "previous_")
    left_right, seen = warp_error(eyes[0], eyes[1], *now)
    temporal = np.mean([warp_error(eyes[e], before[e], now[e], then[e])[0] for e in (0, 1)])
    return left_right, float(temporal), seen


def agreeing(eyes: np.ndarray, before: np.ndarray, frame: dict) -> tuple[np.ndarray, np.ndarray]:
    """Eyes and frames that agree exactly up to the one Catmull-Rom resampling the reprojection
    does: the right eye as the left one carried over, each eye as the frame before carried over.
    Their warp errors are the measurement's floor for these strokes."""
    now, then = views_of(frame), views_of(frame, "previous_")

    def carry(image: np.ndarray, target: View, source: View) -> np.ndarray:
        return sample(image, correspondence(target, source)[0], cubic=True).round().astype(np.uint8)

    right = carry(eyes[0], now[1], now[0])
    carried = np.stack([carry(before[e], now[e], then[e]) for e in (0, 1)])
    return np.stack([eyes[0], right]), carried


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="candy")
    parser.add_argument("--eye-size", default="640x720")
    parser.add_argument("--tiles", default="", help="the mirror's tile options, e.g. '--tile 64 --halo 16'")
    parser.add_argument("--consistency", default="both", choices=("stereo", "temporal", "both"))
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--out", required=True, help="output prefix (.json, .md, .png)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs = {mode: run_mirror(args, mode, Path(folder)) for mode in ("off", args.consistency)}
    off, on = runs["off"][2], runs[args.consistency][2]
    rows = {"raw": (on["raw"], on["previous_raw"], on),
            f"{args.style}, --consistency off": (off["stylized"], off["previous"], off),
            f"{args.style}, --consistency {args.consistency}": (on["stylized"], on["previous"], on)}
    errors = {name: errors_of(*row) for name, row in rows.items()}
    stereo, temporal = agreeing(on["stylized"], on["previous"], on)
    errors[f"{args.style}, agreeing up to one resampling (floor)"] = (
        errors_of(stereo, on["previous"], on)[0], errors_of(temporal, on["previous"], on)[1], errors["raw"][2])
    grid = tiles.TileGrid(*map(int, on["grid"]))
    skipped = len(on["skipped"]) / (2 * len(grid))
    command_line = "xvfb-run -a python " + " ".join(shlex.quote(a) for a in sys.argv)
    raw = errors["raw"]
    lines = [f"# Consistency in `vrstyle mirror`: {args.style}, demo scene {args.eye_size} per eye", "",
             f"Command: `{command_line}`", "",
             "Two mirror runs, their frame dumps read back: " + " and ".join(f"`{' '.join(run[0])}`"
                                                                            for run in runs.values())
             + ". Warp error: mean absolute difference in grey levels between an image and another view's "
             f"image warped into it with the exact depth, on the pixels both see ({100 * raw[2]:.0f}% of the "
             "left eye for left/right); temporal: each eye of a run's last frame against the same eye of the "
             "frame shown before it (stylised frames come seconds apart on this CPU: the head moved further "
             "than in one headset frame). Raw renders from the second run. The floor: the second run's "
             "stylised eyes made to agree exactly up to the one Catmull-Rom resampling the reprojection does "
             "(the right eye as the left carried over, each eye as the frame before carried over), measured "
             "the same way: what the bilinear warp of the measurement itself costs these strokes.", "",
             "| eyes | left/right warp error | x raw | temporal warp error | x raw |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {lr:.2f} | {lr / raw[0]:.1f}x | {t:.2f} | {t / raw[1]:.1f}x |"
              for name, (lr, t, _) in errors.items()]
    lines += ["", f"{len(on['skipped'])} of {2 * len(grid)} tiles ({grid.rows}x{grid.cols} per eye) not stylised "
                  f"({100 * skipped:.0f}%). The runs' last lines:", ""]
    lines += [f"- `{run[1]}`" for run in runs.values()]
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{out}.json").write_text(json.dumps({"command": command_line, "runs": [run[0] for run in runs.values()],
                                               "errors": errors, "skipped_share": skipped}, indent=1) + "\n")
    figure({name: (row[0], views_of(row[2])) for name, row in rows.items()}, Path(f"{out}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
