"""Show the demo scene in an OpenXR headset, stylised by style workers, at the headset's frame rate.

Works with any OpenXR runtime that offers OpenGL: SteamVR, Monado, Meta Link. The workers
run elsewhere (--broker) or are started on this machine; this client itself needs no torch.
"""

from __future__ import annotations

import argparse
import logging

from vrstyle import settings
from vrstyle.commands._checks import output_folder
from vrstyle.commands._common import (
    add_carry_argument, add_codec_arguments, add_curve_arguments, add_rings_argument, carry_option, open_broker, plural,
    positive_int,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", metavar="URL",
                        help="broker of running style workers, e.g. tcp://gpu-box:5555 (default: start "
                             "--workers local workers, which needs torch here)")
    add_curve_arguments(parser, default_name="client")
    add_codec_arguments(parser)
    parser.add_argument("--workers", type=positive_int,
                        help="local workers to start without --broker (default: one on each GPU, else one on the CPU)")
    parser.add_argument("--style", default=settings.DEFAULT_STYLE,
                        help=f"style or model name the workers serve (default {settings.DEFAULT_STYLE})")
    parser.add_argument("--halo", type=int, default=settings.HALO,
                        help=f"context read around each tile, px (default {settings.HALO}; smaller for small models)")
    parser.add_argument("--overlap", type=int, default=settings.OVERLAP,
                        help=f"band blended between neighbouring tiles, px (default {settings.OVERLAP})")
    parser.add_argument("--foveation", choices=("off", "fixed", "gaze"), default="off",
                        help="tiles away from each eye's optical centre (fixed) or gaze point (gaze: eye tracking "
                             "through XR_EXT_eye_gaze_interaction, else fixed) at 1/2 and 1/4 resolution (default off)")
    add_rings_argument(parser)
    parser.add_argument("--consistency", choices=settings.CONSISTENCY, default="off",
                        help="with the scene's depth: stereo, the right eye shows the left eye's strokes wherever it "
                             "sees the same surface; temporal, each shown frame carries the previous one's strokes "
                             "over where it sees the same surface; both (default off)")
    add_carry_argument(parser)
    parser.add_argument("--tile", type=positive_int, default=settings.TILE,
                        help=f"with foveation or stereo consistency, the largest tile core, px (default "
                             f"{settings.TILE}; otherwise each worker gets one tile of each eye)")
    parser.add_argument("--pipeline-depth", type=int, default=settings.XR_PIPELINE_DEPTH, metavar="N",
                        help="show frame t-N while frame t is stylised; the layer carries the pose each image "
                             "was rendered with, so reprojection stays right "
                             f"(default {settings.XR_PIPELINE_DEPTH})")
    parser.add_argument("--frames", type=int, default=0, help="end the session after this many frames (default: run "
                                                              "until the runtime ends it)")
    parser.add_argument("--graphics", choices=("auto", "egl", "glx", "wgl"), default="auto",
                        help="OpenGL binding: EGL where the runtime offers it (no display needed), else GLX/WGL")
    parser.add_argument("--mirror", action="store_true", help="show what the headset shows in a desktop window")
    parser.add_argument("--reconnect-timeout", type=float, default=settings.XR_RECONNECT_TIMEOUT_S, metavar="S",
                        help="seconds to wait for a lost runtime to come back (0: leave at once)")
    parser.add_argument("--record", type=output_folder, metavar="DIR",
                        help="save submitted eye images with their raw render, tiles and poses (.npz) and a summary")
    parser.add_argument("--record-every", type=positive_int, default=10, metavar="N",
                        help="record every Nth frame (default 10)")


def run(args: argparse.Namespace) -> int:
    from vrstyle.errors import VrstyleError
    from vrstyle.xr.app import HeadsetApp, HeadsetOptions

    if args.frames < 0 or args.pipeline_depth < 0 or args.reconnect_timeout < 0:
        raise VrstyleError("--frames, --pipeline-depth and --reconnect-timeout cannot be negative")
    if args.curve and not args.broker:
        raise VrstyleError("--curve needs --broker")
    options = HeadsetOptions(graphics=args.graphics, depth=args.pipeline_depth, frames=args.frames,
                             mirror=args.mirror, reconnect_s=args.reconnect_timeout, record=args.record,
                             record_every=args.record_every, foveation=args.foveation,
                             consistency=args.consistency, carry=carry_option(args))

    clusters = []

    def make_pipeline(height: int, width: int):
        """Called once the runtime is up and has said its eye size: runtime errors come first."""
        from vrstyle.pipeline import FramePipeline

        if args.broker is None:
            clusters.append(start_local_workers(args))
            args.broker = clusters[0].client_endpoint
        backend, _ = open_broker(args, [args.style])
        foveated = args.foveation != "off"  # rings of tiles, whatever the workers
        if foveated or settings.stereo_consistent(args.consistency):  # or tiles the left eye's strokes can cover
            return FramePipeline.plan(backend, height, width, args.style, tile=args.tile, halo=args.halo,
                                      overlap=args.overlap, rings=args.rings if foveated else None)
        workers = sum(args.style in worker["styles"] for worker in backend.status()["workers"])
        return FramePipeline.plan(backend, height, width, args.style, workers=workers, halo=args.halo,
                                  overlap=args.overlap)

    try:
        report = HeadsetApp(options, make_pipeline).run()
    finally:
        for cluster in clusters:
            cluster.close()
    print(f"vrstyle headset: {plural(report.frames, 'frame')} in {report.seconds:.1f} s, {report.stylized} stylised, "
          f"{plural(report.losses, 'runtime loss', 'runtime losses')}"
          + ("" if report.carried is None else f", {100 * report.carried:.0f}% of the left eye carried over")
          + ("" if report.reprojected is None else f", {100 * report.reprojected:.0f}% of the right eye "
             "reprojected from the left")
          + ("" if report.skipped is None else f", {100 * report.skipped:.0f}% of the tiles not stylised"))
    return 0


def start_local_workers(args: argparse.Namespace):
    """A broker and ``--workers`` style workers on this machine (they need torch; the client does not)."""
    import importlib.util

    from vrstyle.errors import VrstyleError
    from vrstyle.transport.cluster import LocalCluster

    if importlib.util.find_spec("torch") is None:
        raise VrstyleError("no --broker given and torch is not installed here to run local workers: point "
                           "--broker at running workers (vrstyle workers) or install vrstyle[torch]")
    from vrstyle.live import local_devices

    devices = None if args.workers else local_devices()
    workers = args.workers or len(devices)
    log.info("starting %s for %s on %s", plural(workers, "local worker"), args.style, ", ".join(devices or ["cpu"]))
    return LocalCluster([args.style], workers=workers, devices=devices).start()
