"""Comfort metrics on the demo scene: do both eyes see the same strokes, and do strokes hold still?

The demo scene is rendered with its depth, so the correspondence between the two eyes, and
between consecutive frames of the moving head, is exact (:mod:`vrstyle.reproject`). On the
pixels both views see:

* **left/right warp error**: the right eye's image warped into the left eye, mean absolute
  difference from the left eye's image (grey levels);
* **temporal warp error**: frame t warped into frame t + 1/90 s (the head moves; the scene's
  objects are held still between the two, so head motion alone is measured).

Raw renders, and each style's teacher and student on whole eyes (both eyes normalised with
their joint statistics, as the pipeline does), side by side; then each with **stereo
reprojection**: the left eye stylised, the right eye made of the left's stylised pixels
reprojected with depth wherever the left eye sees the same surface, its own stylisation only
in the rest (disocclusions and the strip the left eye does not see), with the share of the
right eye's pixels that still needed stylising. The acceptance of the comfort
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

from vrstyle.models import StyleEngine, resolve_model
from vrstyle.normstats import combine_moments, moments_to_stats
from vrstyle.progress import progress_bar
from vrstyle.reproject import View, correspondence, sample, warp_error

FRAME_S = 1 / 90


def render(eye_shape: tuple[int, int], times: list[float]) -> list[dict]:
    """Per time: stereo eyes (2, H, W, 3), and both eyes' views at t and t + FRAME_S (scene held at t)."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    from vrstyle.gl.context import HeadlessContext
    from vrstyle.gl.scene import DemoScene

    frames = []
    with HeadlessContext() as _, DemoScene(*eye_shape, keep_depth=True) as scene:
        for t in times:
            pair = {}
            for key, head_time in (("now", t), ("next", t + FRAME_S)):
                views, projections = scene.eye_views(head_time)
                scene.render(views, projections, t)
                depth = scene.read_depth()
                pair[key] = {"eyes": scene.read(), "views": [View(views[e], projections[e], depth[e]) for e in (0, 1)]}
            frames.append(pair)
    return frames


def stylise(engine: StyleEngine, eyes: np.ndarray) -> np.ndarray:
    _, moments = engine.stylize_and_measure(eyes, None, 0, 0)
    stats = moments_to_stats(combine_moments(moments)).astype(np.float32)
    return engine.stylize(eyes, stats, crop=0)


def reproject_right(eyes: np.ndarray, views: list[View]) -> tuple[np.ndarray, float]:
    """The right eye made from the left eye's pixels where it sees the same surface; (eyes, the
    share of the right eye's pixels left to its own image)."""
    pixels, visible = correspondence(views[1], views[0])
    right = eyes[1].copy()
    right[visible] = np.clip(np.rint(sample(eyes[0], pixels)[visible]), 0, 255).astype(np.uint8)
    return np.stack([eyes[0], right]), float(1 - visible.mean())


def errors(frames: list[dict], images: list[dict]) -> dict[str, float]:
    """Mean left/right and temporal warp errors over the frames (and the shares of pixels seen by both)."""
    stereo, temporal, seen = [], [], []
    for frame, image in zip(frames, images):
        left, right = frame["now"]["views"]
        error, share = warp_error(image["now"][0], image["now"][1], left, right)
        stereo.append(error)
        seen.append(share)
        for eye in (0, 1):
            temporal.append(warp_error(image["next"][eye], image["now"][eye], frame["next"]["views"][eye],
                                       frame["now"]["views"][eye])[0])
    return {"left_right": float(np.mean(stereo)), "temporal": float(np.mean(temporal)), "seen_both": float(np.mean(seen))}


def anaglyph(eyes: np.ndarray) -> np.ndarray:
    return np.concatenate([eyes[0][..., :1], eyes[1][..., 1:]], -1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", default="candy,mosaic")
    parser.add_argument("--eye-size", default="640x720", help="WIDTHxHEIGHT")
    parser.add_argument("--times", default="1,4,7", help="scene times, s")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/comfort")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    width, height = (int(v) for v in args.eye_size.split("x"))
    frames = render((height, width), [float(t) for t in args.times.split(",")])
    rows = {"raw": errors(frames, [{k: f[k]["eyes"] for k in ("now", "next")} for f in frames])}
    shown = {"raw": frames[0]["now"]["eyes"]}
    models = [f"{style}/{kind}" for style in args.styles.split(",") for kind in ("teacher", "binary")]
    with progress_bar(total=len(models) * len(frames) * 2, desc="stylise", unit="stereo frame") as bar:
        for name in models:
            engine = StyleEngine(resolve_model(name).load())
            images = []
            for frame in frames:
                images.append({key: stylise(engine, frame[key]["eyes"]) for key in ("now", "next")})
                bar.update(2)
            rows[name] = errors(frames, images)
            shown[name] = images[0]["now"]
            reprojected, own = [], []
            for frame, image in zip(frames, images):
                pair = {}
                for key in ("now", "next"):
                    pair[key], share = reproject_right(image[key], frame[key]["views"])
                    own.append(share)
                reprojected.append(pair)
            rows[f"{name}, stereo reprojection"] = {**errors(frames, reprojected), "right_eye_stylised": float(np.mean(own))}
            shown[f"{name}, stereo reprojection"] = reprojected[0]["now"]
    raw = rows["raw"]
    for row in rows.values():
        row["left_right_vs_raw"] = row["left_right"] / raw["left_right"]
        row["temporal_vs_raw"] = row["temporal"] / raw["temporal"]
    command = "python " + shlex.join(sys.argv)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "eye_size": [width, height],
                                                   "times": args.times, "threads": args.threads,
                                                   "load_average": list(os.getloadavg()), "rows": rows}, indent=1) + "\n")
    lines = ["| images | left/right warp error | x raw | temporal warp error | x raw | right eye pixels stylised |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['left_right']:.2f} | {r['left_right_vs_raw']:.1f}x | {r['temporal']:.2f} | "
              f"{r['temporal_vs_raw']:.1f}x | {100 * r.get('right_eye_stylised', 1.0):.0f}% |" for name, r in rows.items()]
    out.with_suffix(".md").write_text(
        f"# Comfort on the demo scene: left/right and temporal warp error\n\nCommand: `{command}`\n\n"
        f"Mean absolute difference (grey levels) on the pixels both views see ({100 * raw['seen_both']:.0f}% of "
        f"the left eye for left/right), {width}x{height} eyes, scene times {args.times} s, head moving "
        f"{1000 * FRAME_S:.1f} ms between temporal pairs. Whole eyes, joint statistics of both eyes. "
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
