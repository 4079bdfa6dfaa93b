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
blended with the fresh stylisation, the previous frame's share at each ``--carried`` weight.
Reprojection is the mirror's (:func:`vrstyle.reproject.reproject`, the CPU twin of its shader:
Catmull-Rom, thin disocclusions filled in the stereo pass, blended in bytes; a headset's sRGB
swapchain blends in linear light).

What carrying more costs is **detail**: the shown left eye's high-frequency energy (mean
absolute 3 x 3 Laplacian) against the fresh stylisation's. Strokes carried over many frames are
resampled each time, and strokes that differ from frame to frame are averaged: both soften.

The acceptance of the comfort issue is stylised error <= 1.5x raw. The figure shows
left | right | red-cyan anaglyph (temporal reprojection at the product's weight, if swept).

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
from vrstyle.reproject import FILL_REACH, View, reproject, warp_error

FRAME_S = 1 / 90


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


def reprojected(sequence: list[dict], fresh: list[np.ndarray], carried: float) -> tuple[list[np.ndarray], float]:
    """Stereo reprojection (the right eye from the left where it sees the same surface, thin
    disocclusions filled) and, with ``carried`` > 0, the left eye's previous frame carried over
    at that share; returns the frames and the mean share of right-eye pixels stylised afresh."""
    out, own = [], []
    for k, (frame, eyes) in enumerate(zip(sequence, fresh)):
        left = eyes[0]
        if carried and k:
            left, _ = reproject(out[-1][0], left, frame["views"][0], sequence[k - 1]["views"][0], carried)
        right, drawn = reproject(left, eyes[1], frame["views"][1], frame["views"][0], fill=FILL_REACH)
        out.append(np.stack([left, right]))
        own.append(1 - drawn)
    return out, float(np.mean(own))


def detail(image: np.ndarray) -> float:
    """Mean absolute 3 x 3 Laplacian (grey levels): the high-frequency energy that strokes carry."""
    x = image.astype(np.float32)
    laplacian = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    return float(np.abs(laplacian).mean())


def detail_kept(shown: list[list[np.ndarray]], fresh: list[list[np.ndarray]]) -> float:
    """The shown left eyes' :func:`detail` over the fresh stylisations', mean over sequences' last frames."""
    return float(np.mean([detail(a[-1][0]) / detail(b[-1][0]) for a, b in zip(shown, fresh)]))


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
    parser.add_argument("--carried", default=str(settings.CARRIED),
                        help="comma-separated previous-frame shares for temporal reprojection (the product's: "
                             f"{settings.CARRIED})")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/comfort")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    width, height = (int(v) for v in args.eye_size.split("x"))
    weights = [float(w) for w in args.carried.split(",")]
    pictured = settings.CARRIED if settings.CARRIED in weights else weights[0]
    sequences = render((height, width), [float(t) for t in args.times.split(",")], args.length)
    rows = {"raw": errors(sequences, [[frame["eyes"] for frame in sequence] for sequence in sequences])}
    shown = {"raw": sequences[0][-1]["eyes"]}
    lefts: dict[str, dict[str, np.ndarray]] = {}
    models = [f"{style}/{kind}" for style in args.styles.split(",") for kind in ("teacher", "binary")]
    with progress_bar(total=len(models) * len(sequences) * args.length, desc="stylise", unit="stereo frame") as bar:
        for name in models:
            engine = StyleEngine(resolve_model(name).load())
            fresh = []
            for sequence in sequences:
                fresh.append([stylise(engine, frame["eyes"]) for frame in sequence])
                bar.update(len(sequence))
            rows[name] = {**errors(sequences, fresh), "detail_kept": 1.0}
            shown[name] = fresh[0][-1]
            lefts[name] = {"fresh": fresh[0][-1][0]}
            variants = [("stereo reprojection", 0.0)] + [
                (f"stereo + temporal reprojection, carried {w:g}", w) for w in weights]
            for label, carried in variants:
                results = [reprojected(sequence, images, carried) for sequence, images in zip(sequences, fresh)]
                frames = [frames for frames, _ in results]
                rows[f"{name}, {label}"] = {**errors(sequences, frames), "detail_kept": detail_kept(frames, fresh),
                                            "right_eye_stylised": float(np.mean([share for _, share in results]))}
                if carried in (0.0, pictured):
                    shown[f"{name}, {label}"] = frames[0][-1]
                if carried:
                    lefts[name][f"carried {carried:g}"] = frames[0][-1][0]
    raw = rows["raw"]
    for row in rows.values():
        row["left_right_vs_raw"] = row["left_right"] / raw["left_right"]
        row["temporal_vs_raw"] = row["temporal"] / raw["temporal"]
    command = "python " + shlex.join(sys.argv)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "eye_size": [width, height],
                                                   "times": args.times, "length": args.length,
                                                   "carried": weights, "threads": args.threads,
                                                   "load_average": list(os.getloadavg()), "rows": rows}, indent=1) + "\n")
    lines = ["| images | left/right warp error | x raw | temporal warp error | x raw | right eye pixels stylised "
             "| detail kept |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['left_right']:.2f} | {r['left_right_vs_raw']:.1f}x | {r['temporal']:.2f} | "
              f"{r['temporal_vs_raw']:.1f}x | {100 * r.get('right_eye_stylised', 1.0):.0f}% | "
              + ("" if "detail_kept" not in r else f"{100 * r['detail_kept']:.0f}%") + " |" for name, r in rows.items()]
    out.with_suffix(".md").write_text(
        f"# Comfort on the demo scene: left/right and temporal warp error\n\nCommand: `{command}`\n\n"
        f"Mean absolute difference (grey levels) on the pixels both views see ({100 * raw['seen_both']:.0f}% of "
        f"the left eye for left/right), {width}x{height} eyes, sequences of {args.length} frames "
        f"{1000 * FRAME_S:.1f} ms apart from scene times {args.times} s (head moving, objects held). Whole eyes, "
        f"joint statistics of both eyes; temporal reprojection carries {args.carried} of the previous "
        f"frame (the product: {settings.CARRIED:g}); detail kept: the last frame's left eye's high-frequency "
        f"energy against the fresh stylisation's. "
        f"Target of the comfort issue: <= 1.5x raw. Figures: `{out.with_suffix('.png').name}`, and the "
        f"temporal error and detail against the carried share: `{out.name}-carried.png`; the last left eye "
        f"of the first sequence at 1:1 (a crop, shown 2x) fresh and carried: `{out.name}-detail.png`.\n\n"
        + "\n".join(lines) + "\n")
    figure(shown, out.with_suffix(".png"))
    curves(rows, models, weights, out.with_name(out.name + "-carried.png"))
    details(lefts, out.with_name(out.name + "-detail.png"))
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
            axis.set_title(f"{name.replace('stereo + temporal reprojection', '+ temporal')}: {title}", fontsize=7)
            axis.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def curves(rows: dict[str, dict], models: list[str], weights: list[float], path: Path) -> None:
    """Temporal warp error (x raw) and detail kept against the previous frame's share (0: stereo
    reprojection alone), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (error, kept) = plt.subplots(1, 2, figsize=(9, 3.5))
    shares = [0.0] + weights
    for name in models:
        picked = [rows[f"{name}, stereo reprojection"]] + [
            rows[f"{name}, stereo + temporal reprojection, carried {w:g}"] for w in weights]
        error.plot(shares, [r["temporal_vs_raw"] for r in picked], "o-", label=name)
        kept.plot(shares, [100 * r["detail_kept"] for r in picked], "o-", label=name)
    error.axhline(1.5, color="grey", linestyle="--", label="target 1.5x raw")
    error.set(xlabel="previous frame's share (carried)", ylabel="temporal warp error, x raw", yscale="log")
    error.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    kept.set(xlabel="previous frame's share (carried)", ylabel="detail kept, % of fresh")
    error.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def details(lefts: dict[str, dict[str, np.ndarray]], path: Path, size: int = 128) -> None:
    """A ``size`` px crop of each model's last left eye, fresh and at each carried share, at 1:1
    (drawn 2x, nearest): where carrying softens strokes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(images) for images in lefts.values())
    fig, axes = plt.subplots(len(lefts), columns, figsize=(2.2 * columns, 2.4 * len(lefts)), squeeze=False)
    for row, (name, images) in zip(axes, lefts.items()):
        height, width = next(iter(images.values())).shape[:2]
        top, left = (height - size) // 2, (width - size) // 2
        for axis, (label, image) in zip(row, images.items()):
            axis.imshow(image[top:top + size, left:left + size], interpolation="nearest")
            axis.set_title(f"{name}: {label}", fontsize=7)
            axis.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=size)  # a crop draws about 2 inches of its 2.2-inch cell: 2 px a pixel
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
