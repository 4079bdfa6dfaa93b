"""Show a stereo scene stylised live in a desktop window: the built-in 3D demo scene or --source.

Frames go through the frame pipeline to style workers (started here, or those of --broker)
and come back stitched by the GPU compositor. Keys: Right/Left style, Space raw/stylised,
G tile grid, I statistics, V view mode, PgDn/PgUp photo, Esc or Q quit.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vrstyle import settings
from vrstyle.commands._checks import eye_size, npz_output, output_image
from vrstyle.commands._common import (
    add_carry_argument, add_codec_arguments, add_curve_arguments, add_rings_argument, carry_option, open_broker, plural,
    positive_float, positive_int,
)
from vrstyle.errors import VrstyleError

log = logging.getLogger(__name__)

VIEWS = {"sbs": "SIDE_BY_SIDE", "left": "LEFT", "right": "RIGHT", "anaglyph": "ANAGLYPH"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", nargs="+", metavar="PATH",
                        help="a left and a right image, one image (a photo, or side by side with --side-by-side), "
                             "or a folder (a stereo pair im0/im1 or left/right, else a slideshow); "
                             "default: the built-in 3D demo scene")
    parser.add_argument("--side-by-side", action="store_true", help="--source is a side-by-side stereo image")
    parser.add_argument("--eye-size", type=eye_size, metavar="PRESET|WxH",
                        help="eye size of the demo scene (a headset preset such as quest3, or WIDTHxHEIGHT), largest "
                             f"eye size for images; default {settings.EYE_SIZE[1]}x{settings.EYE_SIZE[0]}, or, with no "
                             "--workers and --device either, what this machine stylises live (on a CPU alone: timed "
                             "once, then cached)")
    parser.add_argument("--ipd", type=float, default=settings.IPD_M,
                        help=f"demo scene's interpupillary distance, metres (default {settings.IPD_M})")
    parser.add_argument("--style", action="append", metavar="NAME",
                        help="style or model name; repeat for several (Right/Left switch); default: every style "
                             "available here (with --broker: every style its workers serve)")
    parser.add_argument("--workers", type=positive_int,
                        help="style worker processes to start on this machine (default 1, or one per GPU)")
    parser.add_argument("--device", action="append", metavar="DEVICE",
                        help="device of each started worker (cpu, cuda:0, ...; once per worker; default cpu)")
    parser.add_argument("--threads", type=positive_int, help="torch threads per started worker")
    parser.add_argument("--broker", metavar="ENDPOINT",
                        help="use the workers of the broker at ENDPOINT (e.g. tcp://host:5555) instead of starting any")
    add_curve_arguments(parser, default_name="client")
    add_codec_arguments(parser)
    parser.add_argument("--deadline", type=positive_float, metavar="MS",
                        help="fill tiles not back this long after capture from the previous frame (never stall); "
                             "default: wait for every tile")
    parser.add_argument("--pipeline-depth", type=positive_int, metavar="N",
                        help="frames in flight at once (default: one per worker, so a frame never queues behind "
                             "another for the same worker)")
    parser.add_argument("--tile", type=positive_int,
                        help=f"largest tile core, px (default {settings.TILE}; one worker: each eye whole)")
    parser.add_argument("--halo", type=int, help=f"tile halo, px (default {settings.HALO}; whole eyes: 0)")
    parser.add_argument("--overlap", type=int,
                        help=f"band blended between tiles, px (default {settings.OVERLAP}; whole eyes: 0)")
    parser.add_argument("--ramp", choices=("linear", "cosine"), default=settings.RAMP, help="feather ramp")
    parser.add_argument("--foveation", choices=("off", "fixed"), default="off",
                        help="fixed: tiles away from each eye's middle at 1/2 and 1/4 resolution (default off)")
    add_rings_argument(parser)
    parser.add_argument("--consistency", choices=settings.CONSISTENCY, default="off",
                        help="with the demo scene's depth: stereo, the right eye shows the left eye's strokes "
                             "wherever it sees the same surface; temporal, each frame carries the previous one's "
                             "strokes over where it sees the same surface; both (default off)")
    add_carry_argument(parser)
    parser.add_argument("--raw", action="store_true", help="start showing the raw source (Space toggles)")
    parser.add_argument("--grid", action="store_true", help="start with the tile grid shown (G toggles)")
    parser.add_argument("--stats", action="store_true", help="start with the figures (frame rates, latency) shown (I toggles)")
    parser.add_argument("--view", choices=VIEWS, default="sbs", help="side by side, one eye, or red-cyan anaglyph")
    parser.add_argument("--frames", type=positive_int, metavar="N", help="quit after N stylised frames were shown")
    parser.add_argument("--screenshot", type=output_image, metavar="PATH", help="save the window's last frame here on quitting")
    parser.add_argument("--dump", type=npz_output, metavar="PATH.npz",
                        help="save the last shown frame's raw eyes, stitched eyes and statistics (and the demo "
                             "scene's depth and poses) here on quitting")
    parser.add_argument("--no-vsync", action="store_true", help="draw as fast as possible")


def run(args: argparse.Namespace) -> int:
    from vrstyle.gl.context import WindowContext
    from vrstyle.gl.display import ViewMode
    from vrstyle.mirror import DesktopMirror, MirrorOptions
    from vrstyle.pipeline import FramePipeline
    from vrstyle.sources import open_source

    if args.broker and (args.device or args.threads or args.workers):
        raise VrstyleError("--workers, --device and --threads are for workers started here, not with --broker")
    if args.curve and not args.broker:
        raise VrstyleError("--curve needs --broker")
    if args.device and args.workers and len(args.device) != args.workers:
        raise VrstyleError(f"{len(args.device)} --device given for {plural(args.workers, 'worker')}")
    for path in args.source or ():
        if not Path(path).exists():
            raise VrstyleError(f"source {path} does not exist")
    if args.consistency != "off" and args.source:
        raise VrstyleError(f"--consistency {args.consistency} needs each eye's depth: only the demo scene "
                           "(no --source) has it")
    carry = carry_option(args)
    styles = None if args.broker else local_styles(args.style)
    # No display or GL: fail before anything is timed or started. Sized once the eyes are known.
    window = WindowContext(2 * settings.EYE_SIZE[1], settings.EYE_SIZE[0], "vrstyle mirror", vsync=not args.no_vsync)
    source = cluster = backend = None
    try:
        if styles and args.eye_size is None and args.workers is None and args.device is None:
            from vrstyle.live import plan_live

            window.glfw.set_window_title(window.window, "vrstyle mirror - timing this machine")
            plan = plan_live(styles[0])
            print(f"vrstyle mirror: {plan.reason}", file=sys.stderr)
            args.eye_size, args.device = (None, plan.eye_shape), plan.devices
        args.workers = args.workers or len(args.device or ()) or 1
        whole_eyes = args.workers == 1 and not args.broker and args.foveation == "off"
        _, eye_shape = args.eye_size or (None, settings.EYE_SIZE)
        source = open_source(args.source, eye_shape, args.side_by_side) if args.source else None
        height, width = source.eye_shape if source else eye_shape
        tile, halo, overlap = _grid_options(args, (height, width) if whole_eyes else None)
        window.resize(2 * width, height)
        window.glfw.set_window_title(window.window, "vrstyle mirror - starting style workers")
        window.swap()
        backend, cluster, styles = open_backend(args, styles)
        serving = _serving(backend, styles[0])
        depth = args.pipeline_depth or serving
        pipeline = FramePipeline.plan(backend, height, width, styles[0], tile=tile, halo=halo, overlap=overlap,
                                      ramp=args.ramp, deadline_s=None if args.deadline is None else args.deadline / 1000,
                                      rings=args.rings if args.foveation == "fixed" else None, depth=depth)
        if source is None:
            from vrstyle.sources import SceneSource

            source = SceneSource((height, width), ipd=args.ipd,  # depth for reprojection, or the dump
                                 keep_depth=args.consistency != "off" or args.dump is not None)
        options = MirrorOptions(styles=styles, stylized=not args.raw, show_grid=args.grid, show_figures=args.stats,
                                mode=ViewMode[VIEWS[args.view]], frames=args.frames, screenshot=args.screenshot,
                                dump=args.dump, consistency=args.consistency, carry=carry, workers=serving)
        mirror = DesktopMirror(window, source, pipeline, options)
        try:
            rates = mirror.run()
        finally:
            mirror.close()
        print(f"vrstyle mirror: showed {plural(rates.stylized_frames, 'stylised frame')}: "
              f"{rates.display_fps:.1f} fps display, {rates.stylized_fps:.2f} fps stylised, "
              f"{rates.latency_ms:.0f} ms latency{rates.latency_ratio()}, {rates.late_tiles} late and "
              f"{plural(rates.failed_tiles, 'lost tile')}"
              + ("" if rates.carried is None else f", {100 * rates.carried:.0f}% of the left eye carried over")
              + ("" if rates.reprojected is None else f", {100 * rates.reprojected:.0f}% of the right eye "
                 f"reprojected from the left, {100 * rates.skipped:.0f}% of the tiles not stylised"),
              file=sys.stderr)
    finally:
        if source is not None:
            source.close()
        window.close()
        if backend is not None:
            backend.close()
        if cluster is not None:
            cluster.close()
    return 0


def _grid_options(args: argparse.Namespace, whole_eye: tuple[int, int] | None) -> tuple:
    """(tile, halo, overlap): as given, else each eye whole with no halo (the plain network per
    eye, cheapest and exact) where ``whole_eye`` is the eye shape, else the tiling defaults."""
    if whole_eye is not None and args.tile is None and args.halo is None and args.overlap is None:
        return whole_eye, 0, 0
    return (args.tile or settings.TILE, settings.HALO if args.halo is None else args.halo,
            settings.OVERLAP if args.overlap is None else args.overlap)


def _serving(backend, style: str) -> int:
    """Workers serving ``style`` (at least 1): frames in flight by default. More would queue behind
    a busy worker and add a whole inference to the latency; fewer leave workers idle."""
    return max(1, sum(style in worker["styles"] for worker in backend.status()["workers"]))


def local_styles(names: list[str] | None) -> list[str]:
    """The styles workers started here serve: those named (checked now, before any process
    starts), else every style available here."""
    from vrstyle.models.registry import STYLES, available_models, resolve_model

    if names:
        for style in names:
            resolve_model(style)  # one-line error for unknown styles
        return names
    available = {spec.style for spec in available_models().values()}
    styles = [style for style in STYLES if style in available] + sorted(available - set(STYLES))
    if not styles:
        resolve_model(settings.DEFAULT_STYLE)  # raises, saying what is missing
    return styles


def open_backend(args: argparse.Namespace, styles: list[str] | None):
    """(broker client, local cluster or None, styles): workers started here for ``styles``, or those of ``--broker``."""
    if args.broker:
        client, styles = open_broker(args, args.style or ())
        return client, None, styles
    from vrstyle.transport.cluster import LocalCluster

    log.info("starting %s for %s", plural(args.workers, "worker"), ", ".join(styles))
    cluster = LocalCluster(styles, workers=args.workers, devices=args.device, threads=args.threads).start()
    try:
        return cluster.client(), cluster, styles
    except BaseException:
        cluster.close()
        raise
