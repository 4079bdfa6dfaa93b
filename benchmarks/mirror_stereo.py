"""`vrstyle mirror --consistency stereo` on the demo scene: how far the eyes agree, with and without.

    xvfb-run -a python benchmarks/mirror_stereo.py --out benchmarks/results/mirror-stereo

Runs the mirror (workers, tiles, GPU compositor, the stereo reprojection pass) and dumps its
last frame; the dump holds each eye's own stitched stylisation (its tiles), the eyes as shown,
and the scene's depth and poses. Left/right warp error (:func:`vrstyle.reproject.warp_error`,
exact correspondence from depth) of the raw render, of the eyes stylised independently and of
the eyes as shown; ``<out>.png``: left | right | anaglyph | warped difference of each.
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


def figure(shown: dict[str, np.ndarray], views: list[View], path: Path) -> None:
    """Per row: left | right | anaglyph | how far the right eye, warped into the left, differs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pixels, seen = correspondence(views[0], views[1])
    fig, axes = plt.subplots(len(shown), 4, figsize=(12, 3.1 * len(shown)), squeeze=False)
    for row, (name, eyes) in zip(axes, shown.items()):
        difference = np.abs(sample(eyes[1], pixels) - eyes[0]).mean(-1) * seen
        for axis, image, title in zip(row, (eyes[0], eyes[1], anaglyph(eyes), difference),
                                      ("left", "right", "anaglyph", "|left - right warped|, 0..40")):
            axis.imshow(image, cmap="magma", vmin=0, vmax=40) if image.ndim == 2 else axis.imshow(image)
            axis.set_title(f"{name}: {title}", fontsize=8)
            axis.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="candy")
    parser.add_argument("--eye-size", default="640x720")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--out", required=True, help="output prefix (.json, .md, .png)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        dump = Path(folder) / "frame.npz"
        mirror = [sys.executable, "-m", "vrstyle.cli", "mirror", "--style", args.style, "--eye-size", args.eye_size,
                  "--consistency", "stereo", "--frames", str(args.frames), "--dump", str(dump)]
        done = subprocess.run(mirror, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        frame = dict(np.load(dump))
    grid = tiles.TileGrid(*map(int, frame["grid"]))
    views = [View(frame["views"][e], frame["projections"][e], frame["depth"][e]) for e in (0, 1)]
    shown = {"raw": frame["raw"],
             f"{args.style}, each eye on its own": tiles.stitch(frame["tiles"], grid, str(frame["ramp"])),
             f"{args.style}, --consistency stereo": frame["stylized"]}
    errors = {name: warp_error(eyes[0], eyes[1], *views) for name, eyes in shown.items()}
    reprojected = float(np.mean(np.any(frame["stylized"][1] != shown[f"{args.style}, each eye on its own"][1], -1)))
    command = "xvfb-run -a python " + " ".join(shlex.quote(a) for a in sys.argv)
    raw_error = errors["raw"][0]
    lines = [f"# Stereo consistency in `vrstyle mirror`: {args.style}, demo scene {args.eye_size} per eye", "",
             f"Command: `{command}`", "",
             f"The mirror's run: `vrstyle {' '.join(mirror[3:-2])}` (its frame dump read back). "
             f"Left/right warp error: mean absolute difference in grey levels of the left eye and the right eye "
             f"warped into it with the exact depth, on the {100 * errors['raw'][1]:.0f}% of the left eye's "
             f"pixels the right eye sees.", "",
             "| eyes | left/right warp error | x raw |", "|---|---|---|"]
    lines += [f"| {name} | {error:.2f} | {error / raw_error:.1f}x |" for name, (error, _) in errors.items()]
    lines += ["", f"The mirror reported `{done.stderr.strip().splitlines()[-1]}`; pixels of the right eye that "
                  f"differ from its own stitch: {100 * reprojected:.0f}%."]
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{out}.json").write_text(json.dumps({"command": command, "mirror": mirror[3:-2], "errors": errors,
                                               "reprojected_share": reprojected}, indent=1) + "\n")
    figure(shown, views, Path(f"{out}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
