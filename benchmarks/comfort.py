"""Comfort metrics on the demo scene: do both eyes see the same strokes, and do strokes hold still?

The demo scene is rendered with its depth, so the correspondence between the two eyes, and
between consecutive frames of the moving head, is exact (:mod:`vrstyle.reproject`). On the
pixels both views see:

* **left/right warp error**: the right eye's image warped into the left eye, mean absolute
  difference from the left eye's image (grey levels);
* **temporal warp error**: each frame warped into the next, 1/90 s later, over sequences of
  ``--length`` frames (the head moves; the scene's objects are held still, so head motion
  alone is measured).

Raw renders, and each style's teacher and student on whole eyes (both eyes normalised with
their joint statistics, as the pipeline does), side by side; then each with **stereo
reprojection**: the left eye stylised, the right eye made of the left's stylised pixels
reprojected with depth wherever the left eye sees the same surface, its own stylisation only
in the rest (disocclusions and the strip the left eye does not see), with the share of the
right eye's pixels that still needed stylising; and with **temporal reprojection** too: the
left eye's previous output reprojected into the new frame where it sees the same surface and
blended with the fresh stylisation (fresh weight ``BLEND``). The acceptance of the comfort
issue is stylised error <= 1.5x raw. The figure shows left | right | red-cyan anaglyph.

    python benchmarks/comfort.py --styles candy,mosaic --out benchmarks/results/comfort
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from vrstyle import settings
from vrstyle.models import StyleEngine, resolve_model
from vrstyle.normstats import combine_moments, moments_to_stats
from vrstyle.progress import progress_bar
from vrstyle.reproject import View, correspondence, sample, warp_error

FRAME_S = 1 / 90
BLEND = 1 - settings.CARRIED
"""Weight of the fresh stylisation where the previous frame reprojects (temporal reprojection):
the mirror's and the headset's."""


def render(eye_shape: tuple[int, int], times: list[float], length: int) -> list[list[dict]]:
    """Per start time, ``length`` frames 1/90 s apart as the head moves (the scene held at that
    time): each frame's stereo eyes (2, H, W, 3) and both eyes' views with depth."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    from vrstyle.gl.context import HeadlessContext
    from vrstyle.gl.scene import DemoScene

    sequences = []
    with HeadlessContext() as _, DemoScene(*eye_shape, keep_depth=True) as scene:
        for t in times:
            frames = []
            for k in range(length):
                views, projections = scene.eye_views(t + k * FRAME_S)
                scene.render(views, projections, t)
                depth = scene.read_depth()
                frames.append({"eyes": scene.read(), "views": [View(views[e], projections[e], depth[e]) for e in (0, 1)]})
            sequences.append(frames)
    return sequences


def stylise(engine: StyleEngine, eyes: np.ndarray) -> np.ndarray:
    _, moments = engine.stylize_and_measure(eyes, None, 0, 0)
    stats = moments_to_stats(combine_moments(moments)).astype(np.float32)
    return engine.stylize(eyes, stats, crop=0)


def carried(image: np.ndarray, fresh: np.ndarray, target: View, source: View, weight: float) -> tuple[np.ndarray, float]:
    """``fresh`` with ``source``'s ``image`` reprojected into it where ``source`` sees the same
    surface, blended ``1 - weight`` : ``weight`` (0: taken as is); and the share of pixels that kept ``fresh``."""
    pixels, visible = correspondence(target, source)
    out = fresh.astype(np.float32)
    out[visible] = weight * out[visible] + (1 - weight) * sample(image, pixels)[visible]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), float(1 - visible.mean())


def reprojected(sequence: list[dict], fresh: list[np.ndarray], temporal: bool) -> tuple[list[np.ndarray], float]:
    """Stereo reprojection (the right eye from the left where it sees the same surface) and,
    with ``temporal``, the left eye carried over from the previous frame, blended with the fresh
    one; returns the frames and the mean share of right-eye pixels stylised afresh."""
    out, own = [], []
    for k, (frame, eyes) in enumerate(zip(sequence, fresh)):
        left = eyes[0]
        if temporal and k:
            left, _ = carried(out[-1][0], left, frame["views"][0], sequence[k - 1]["views"][0], BLEND)
        right, share = carried(left, eyes[1], frame["views"][1], frame["views"][0], 0.0)
        out.append(np.stack([left, right]))
        own.append(share)
    return out, float(np.mean(own))


def errors(sequences: list[list[dict]], images: list[list[np.ndarray]]) -> dict[str, float]:
    """Mean left/right warp error over all frames and temporal warp error over consecutive ones."""
    stereo, temporal, seen = [], [], []
    for sequence, frames in zip(sequences, images):
        for k, (frame, eyes) in enumerate(zip(sequence, frames)):
            error, share = warp_error(eyes[0], eyes[1], *frame["views"])
            stereo.append(error)
            seen.append(share)
            if k:
                temporal += [warp_error(eyes[e], frames[k - 1][e], frame["views"][e], sequence[k - 1]["views"][e])[0]
                             for e in (0, 1)]
    return {"left_right": float(np.mean(stereo)), "temporal": float(np.mean(temporal)), "seen_both": float(np.mean(seen))}


def anaglyph(eyes: np.ndarray) -> np.ndarray:
    return np.concatenate([eyes[0][..., :1], eyes[1][..., 1:]], -1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", default="candy,mosaic")
    parser.add_argument("--eye-size", default="640x720", help="WIDTHxHEIGHT")
    parser.add_argument("--times", default="1,4,7", help="scene times, s: one sequence each")
    parser.add_argument("--length", type=int, default=6, help="frames per sequence, 1/90 s apart")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/comfort")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    width, height = (int(v) for v in args.eye_size.split("x"))
    sequences = render((height, width), [float(t) for t in args.times.split(",")], args.length)
    rows = {"raw": errors(sequences, [[frame["eyes"] for frame in sequence] for sequence in sequences])}
    shown = {"raw": sequences[0][-1]["eyes"]}
    models = [f"{style}/{kind}" for style in args.styles.split(",") for kind in ("teacher", "binary")]
    with progress_bar(total=len(models) * len(sequences) * args.length, desc="stylise", unit="stereo frame") as bar:
        for name in models:
            engine = StyleEngine(resolve_model(name).load())
            fresh = []
            for sequence in sequences:
                fresh.append([stylise(engine, frame["eyes"]) for frame in sequence])
                bar.update(len(sequence))
            rows[name] = errors(sequences, fresh)
            shown[name] = fresh[0][-1]
            for label, temporal in (("stereo reprojection", False), ("stereo + temporal reprojection", True)):
                results = [reprojected(sequence, images, temporal) for sequence, images in zip(sequences, fresh)]
                rows[f"{name}, {label}"] = {**errors(sequences, [frames for frames, _ in results]),
                                            "right_eye_stylised": float(np.mean([share for _, share in results]))}
                shown[f"{name}, {label}"] = results[0][0][-1]
    raw = rows["raw"]
    for row in rows.values():
        row["left_right_vs_raw"] = row["left_right"] / raw["left_right"]
        row["temporal_vs_raw"] = row["temporal"] / raw["temporal"]
    command = "python " + shlex.join(sys.argv)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "eye_size": [width, height],
                                                   "times": args.times, "length": args.length,
                                                   "blend": BLEND, "threads": args.threads,
                                                   "load_average": list(os.getloadavg()), "rows": rows}, indent=1) + "\n")
    lines = ["| images | left/right warp error | x raw | temporal warp error | x raw | right eye pixels stylised |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['left_right']:.2f} | {r['left_right_vs_raw']:.1f}x | {r['temporal']:.2f} | "
              f"{r['temporal_vs_raw']:.1f}x | {100 * r.get('right_eye_stylised', 1.0):.0f}% |" for name, r in rows.items()]
    out.with_suffix(".md").write_text(
        f"# Comfort on the demo scene: left/right and temporal warp error\n\nCommand: `{command}`\n\n"
        f"Mean absolute difference (grey levels) on the pixels both views see ({100 * raw['seen_both']:.0f}% of "
        f"the left eye for left/right), {width}x{height} eyes, sequences of {args.length} frames "
        f"{1000 * FRAME_S:.1f} ms apart from scene times {args.times} s (head moving, objects held). Whole eyes, "
        f"joint statistics of both eyes; temporal reprojection blends {BLEND:g} of the fresh frame. "
        f"Target of the comfort issue: <= 1.5x raw. Figure: `{out.with_suffix('.png').name}`.\n\n"
        + "\n".join(lines) + "\n")
    figure(shown, out.with_suffix(".png"))
    print("\n".join(lines))
    return 0


def figure(shown: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(shown), 3, figsize=(9, 2.9 * len(shown)), squeeze=False)
    for row, (name, eyes) in zip(axes, shown.items()):
        for axis, image, title in zip(row, (eyes[0], eyes[1], anaglyph(eyes)), ("left", "right", "anaglyph")):
            axis.imshow(image)
            axis.set_title(f"{name}: {title}", fontsize=8)
            axis.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
