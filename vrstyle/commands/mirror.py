"""Show a stereo scene stylised live in a desktop window: the built-in 3D demo scene or --source images.

Frames go through the pipeline to style workers (started here, or --broker URL) and come back
stitched by the GPU compositor. Keys: Right/Left style, Space raw/stylised, G tile grid,
I statistics, V view mode, PgDn/PgUp photo, Esc or Q quit.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vrstyle import settings
from vrstyle.errors import VrstyleError

log = logging.getLogger(__name__)

VIEWS = {"sbs": "SIDE_BY_SIDE", "left": "LEFT", "right": "RIGHT", "anaglyph": "ANAGLYPH"}


def eye_size(text: str) -> tuple[int, int]:
    """'640x720' (width x height) -> (height, width)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x720, got {text!r}") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"eye size {text} is too small (at least 16x16)")
    return height, width


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", nargs="+", metavar="PATH",
                        help="a left and a right image, one image (a photo, or side by side with --side-by-side), "
                             "or a folder (a stereo pair im0/im1 or left/right, else a slideshow); "
                             "default: the built-in 3D demo scene")
    parser.add_argument("--side-by-side", action="store_true", help="--source is a side-by-side stereo image")
    default_size = f"{settings.EYE_SIZE[1]}x{settings.EYE_SIZE[0]}"
    parser.add_argument("--eye-size", type=eye_size, default=settings.EYE_SIZE, metavar="WxH",
                        help=f"eye size of the demo scene, largest eye size for images (default {default_size})")
    parser.add_argument("--ipd", type=float, default=settings.IPD_M,
                        help=f"demo scene's interpupillary distance, metres (default {settings.IPD_M})")
    parser.add_argument("--style", action="append", metavar="NAME",
                        help="style or model name; repeat for several (Right/Left switch); default: every available style")
    parser.add_argument("--raw", action="store_true", help="start showing the raw source (Space toggles)")
    parser.add_argument("--grid", action="store_true", help="start with the tile grid shown (G toggles)")
    parser.add_argument("--stats", action="store_true", help="start with the statistics shown (I toggles)")
    parser.add_argument("--view", choices=VIEWS, default="sbs", help="side by side, one eye, or red-cyan anaglyph")
    parser.add_argument("--frames", type=int, metavar="N", help="quit after N stylised frames were shown")
    parser.add_argument("--screenshot", type=Path, metavar="PATH", help="save the window's last frame here on quitting")
    parser.add_argument("--dump", type=Path, metavar="PATH.npz",
                        help="save the last shown frame's raw eyes, stitched eyes and statistics here on quitting")
    parser.add_argument("--no-vsync", action="store_true", help="draw as fast as possible")


def run(args: argparse.Namespace) -> int:
    from vrstyle.gl.context import WindowContext
    from vrstyle.gl.display import ViewMode
    from vrstyle.gl.mirror import Mirror, MirrorOptions
    from vrstyle.sources import open_source

    if args.frames is not None and args.frames < 1:
        raise VrstyleError(f"--frames must be at least 1, got {args.frames}")
    for path in (args.screenshot, args.dump):
        if path is not None and not path.parent.is_dir():
            raise VrstyleError(f"cannot write {path}: folder {path.parent} does not exist")
    source = open_source(args.source, args.eye_size, args.side_by_side) if args.source else None
    height, width = source.eye_shape if source else args.eye_size
    window = WindowContext(2 * width, height, "vrstyle mirror", vsync=not args.no_vsync)
    scene = None
    try:
        if source is None:
            from vrstyle.gl.scene import DemoScene, SceneSource

            scene = DemoScene(height, width, ipd=args.ipd)
            source = SceneSource(scene)
        options = MirrorOptions(styles=[], stylised=not args.raw, show_grid=args.grid, show_stats=args.stats,
                                mode=ViewMode[VIEWS[args.view]], frames=args.frames, screenshot=args.screenshot,
                                dump=args.dump)
        mirror = Mirror(window, source, None, options, fallback_mask=lambda result: None, late_tiles=lambda result: 0)
        try:
            rates = mirror.run()
        finally:
            mirror.close()
        log.info("shown %d stylised frames, %.1f fps display, %.0f ms latency", rates.stylised_frames,
                 rates.display_fps, rates.latency_ms)
    finally:
        if scene is not None:
            scene.delete()
        window.close()
    return 0
