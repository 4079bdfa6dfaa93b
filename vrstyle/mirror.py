"""The desktop mirror: a window showing a stereo source stylised through the frame pipeline.

The one module joining a frame source, the pipeline and vrstyle.gl's compositor and display
(GL itself knows textures, not pipelines).

The loop draws at the display's rate and never waits for stylisation: it keeps the pipeline's
frames in flight (submitting the newest source frame whenever one completes), collects a
frame once all its tiles are back or its deadline has passed, and stitches it with the GPU
compositor; the newest stylised frame stays on screen until the next. With depth (the demo
scene), consistency passes follow (:class:`~vrstyle.gl.reproject.Reprojection`): the previous
frame's strokes carried over where the surface is the same, the right eye taking the left's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from OpenGL import GL

from vrstyle import settings
from vrstyle.gl.compositor import Compositor
from vrstyle.gl.context import WindowContext
from vrstyle.gl.display import EyeDisplay, TextPanel, ViewMode, screenshot
from vrstyle.gl.reproject import Reprojection
from vrstyle.gl.textures import Framebuffer, owned_texture, preserved_state, read_pixels, upload_image
from vrstyle.images import write_rgb
from vrstyle.pipeline import FramePipeline, FrameResult
from vrstyle.reproject import FILL_REACH, stereo_skip
from vrstyle.resources import Resource
from vrstyle.sources import FrameSource

log = logging.getLogger(__name__)

KEYS_HELP = (
    "Right/Left: next/previous style\n"
    "Space: raw/stylised\n"
    "G: tile grid (red: tiles that fell back; blue: foveated at 1/2, 1/4)\n"
    "I: figures (frame rates, latency)\n"
    "V: side by side, left, right, anaglyph\n"
    "PgDn/PgUp: next/previous photo\n"
    "Esc, Q: quit"
)
RATE_SMOOTHING = 0.9
"""Weight of the past in the frame-rate and latency averages shown."""
IDLE_WAIT_S = 0.005
"""How long the loop waits for events when nothing on screen changed."""


@dataclass
class MirrorOptions:
    """What the mirror shows and when it stops."""

    styles: list[str]
    style_index: int = 0
    stylized: bool = True
    show_grid: bool = False
    show_figures: bool = False
    mode: ViewMode = ViewMode.SIDE_BY_SIDE
    frames: int | None = None
    """Quit after this many frames were shown, counting only stylised ones while stylising (None: run until closed)."""
    screenshot: Path | None = None
    """Where to save the window's last frame on quitting."""
    dump: Path | None = None
    """Where to save the shown frame's raw eyes, stylised eyes and statistics (.npz) on quitting."""
    workers: int = 1
    """Workers serving the style (one frame's inference is spread over them)."""
    consistency: str = "off"
    """Needs a source with depth (the demo scene). ``stereo``: the right eye shows the left eye's
    strokes wherever it sees the same surface; ``temporal``: each eye carries the previous
    frame's strokes over (at ``carry``) where it sees the same surface; ``both``."""
    carry: float = settings.CARRIED
    """Temporal consistency: the previous frame's share where it reprojects onto the same surface."""


@dataclass
class ShownFrame:
    """A stylised frame on screen and what it came from."""

    raw: np.ndarray
    result: FrameResult | None
    """None until the pipeline gives it."""
    captured: float
    views: list | None = None
    """Both eyes' views with depth, where the source gives them."""
    eyes: list[int] | None = None
    """The two textures it is shown from, once composited."""
    previous: "ShownFrame | None" = None
    """The frame shown before it, with its shown eyes read back (kept only for ``--dump``)."""
    stylized: np.ndarray | None = None
    """(2, H, W, 3) the eyes as shown, where read back."""


@dataclass
class Rates:
    """Running figures of the mirror (window title, figures panel, the command's last log line)."""

    display_fps: float = 0.0
    displayed_frames: int = 0
    stylized_fps: float = 0.0
    latency_ms: float = 0.0
    inference_ms: float = 0.0
    """One frame's inference: its requests' forward passes summed, over the workers serving it
    (they run in parallel)."""
    reprojected: float | None = None
    """Share of the right eye's pixels showing the left eye's strokes (stereo consistency)."""
    skipped: float | None = None
    """Share of a stereo frame's tiles not stylised, the left eye's strokes covering them."""
    carried: float | None = None
    """Share of the left eye's pixels carrying the previous frame's strokes (temporal consistency)."""
    stylized_frames: int = 0
    late_tiles: int = 0
    """Tiles that missed their frame's deadline (filled from the previous frame or the raw input)."""
    failed_tiles: int = 0
    """Tiles lost with a worker or refused (filled the same way)."""
    last_display: float = field(default_factory=time.perf_counter)
    last_result: float | None = None

    def latency_ratio(self) -> str:
        """", 2.1x inference": the latency against a frame's inference, once both are known."""
        return f", {self.latency_ms / self.inference_ms:.1f}x inference" if self.inference_ms else ""

    def displayed(self, now: float) -> None:
        self.display_fps = _smooth(self.display_fps, 1.0 / max(now - self.last_display, 1e-6))
        self.last_display = now
        self.displayed_frames += 1

    def stylized(self, now: float, captured: float, result: FrameResult, workers: int = 1) -> None:
        if self.last_result is not None:
            self.stylized_fps = _smooth(self.stylized_fps, 1.0 / max(now - self.last_result, 1e-6))
        self.latency_ms = _smooth(self.latency_ms, 1000.0 * (now - captured))
        if result.timings.inference:
            self.inference_ms = _smooth(self.inference_ms, 1000.0 * result.timings.inference / workers)
        self.last_result = now
        self.stylized_frames += 1
        late = sum(fallback.reason == "late" for fallback in result.fallback.values())
        self.late_tiles += late
        self.failed_tiles += len(result.fallback) - late


class DesktopMirror(Resource):
    """The mirror window's loop: source -> pipeline -> compositor -> display.

    Args:
        window: the window (its context current).
        source: stereo frames: ``source.frame(t)`` and ``source.step(n)``.
        pipeline: a :class:`~vrstyle.pipeline.FramePipeline` over workers (not an in-process
            backend, which would stall the window while it computes).
        options: what to show, when to stop.
    """

    def __init__(self, window: WindowContext, source: FrameSource, pipeline: FramePipeline, options: MirrorOptions):
        import glfw

        self.window, self.source, self.pipeline, self.options = window, source, pipeline, options
        height, width = source.eye_shape
        with self.building():
            self.display, self.panel = self.own(EyeDisplay()), self.own(TextPanel())
            self.raw_textures = [owned_texture(self, width, height) for _ in range(2)]
            self.compositor = self.own(Compositor(pipeline.grid, pipeline.ramp))
            self.reprojection = self.own(Reprojection(width, height)) if options.consistency != "off" else None
            self.reader = self.own(Framebuffer())
            # Temporal consistency reads the frame shown while compositing the next: two pairs in turn.
            self.eye_pairs = [[owned_texture(self, width, height) for _ in range(2)] for _ in range(2)] \
                if settings.temporal_consistent(options.consistency) else [self.compositor.eye_textures]
        self.in_flight: dict[int, ShownFrame] = {}  # frame id -> its raw eyes, capture time and views
        self.shown: ShownFrame | None = None
        self.carry = False
        """Whether the frame on screen may be carried over into the next (same style, with depth)."""
        self.rates = Rates()
        self.started = time.perf_counter()
        self.quit = False
        self.dirty = True  # something other than a new frame (a key) changed what is shown
        glfw.set_key_callback(window.window, self._on_key)

    def _on_key(self, window, key, scancode, action, mods) -> None:
        import glfw

        if action != glfw.PRESS:
            return
        self.dirty = True
        options = self.options
        if key in (glfw.KEY_ESCAPE, glfw.KEY_Q):
            self.quit = True
        elif key in (glfw.KEY_RIGHT, glfw.KEY_LEFT):
            options.style_index = (options.style_index + (1 if key == glfw.KEY_RIGHT else -1)) % len(options.styles)
        elif key == glfw.KEY_SPACE:
            options.stylized = not options.stylized
        elif key == glfw.KEY_G:
            options.show_grid = not options.show_grid
        elif key == glfw.KEY_I:
            options.show_figures = not options.show_figures
        elif key == glfw.KEY_V:
            options.mode = options.mode.next()
        elif key in (glfw.KEY_PAGE_DOWN, glfw.KEY_PAGE_UP):
            self.source.step(1 if key == glfw.KEY_PAGE_DOWN else -1)

    @property
    def style(self) -> str:
        return self.options.styles[self.options.style_index]

    def run(self) -> Rates:
        """Loop until the window closes, Esc/Q, or ``options.frames`` frames were shown.

        While a stylised frame is on screen and nothing changes, the loop waits for events
        instead of redrawing: on a CPU the workers, the demo scene and a software GL share the
        cores, and every idle redraw would slow the stylisation it is waiting for.
        """
        frame_size = None
        while not (self.quit or self.window.should_close()):
            now = time.perf_counter()
            changed = self._stylize(now)
            if not self.options.stylized or self.shown is None:  # the raw source is what is on screen
                self._upload_raw(self.source.frame(now - self.started))
                changed = True
            size = self.window.framebuffer_size()
            if not (changed or self.dirty or size != frame_size):
                self.window.glfw.wait_events_timeout(IDLE_WAIT_S)
                continue
            frame_size, self.dirty = size, False
            self._draw(frame_size)
            count = self.rates.stylized_frames if self.options.stylized else self.rates.displayed_frames + 1
            if self.quit or (self.options.frames is not None and count >= self.options.frames):
                self._save(frame_size)
                break
            self.window.swap()
            self.rates.displayed(time.perf_counter())
        return self.rates

    def _upload_raw(self, raw: np.ndarray) -> None:
        for texture, eye in zip(self.raw_textures, raw):
            upload_image(texture, eye)

    def _stylize(self, now: float) -> bool:
        """Keep the pipeline's frames in flight; show the oldest once it is complete or overdue.

        The source renders a frame only when one is submitted. Returns whether a frame was shown.
        """
        pipeline = self.pipeline
        if pipeline.style != self.style:
            pipeline.style = self.style
            self.carry = False  # nothing of the old style is carried over
        if self.options.stylized and len(self.in_flight) < pipeline.depth:
            raw = self.source.frame(now - self.started)
            views = getattr(self.source, "views", None)
            stereo = settings.stereo_consistent(self.options.consistency)
            skip = stereo_skip(pipeline.grid, views) if stereo and views is not None else None
            self.in_flight[pipeline.submit(raw, skip=skip)] = ShownFrame(raw, None, now, views)
        if not self.in_flight:
            return False
        oldest = min(self.in_flight)
        overdue = pipeline.deadline_s is not None and now - self.in_flight[oldest].captured > pipeline.deadline_s
        if not (overdue or pipeline.ready(oldest)):
            return False
        shown = self.in_flight.pop(oldest)
        shown.result = pipeline.result(oldest, timeout=0.0)
        self._show(shown)
        return True

    def _show(self, shown: ShownFrame) -> None:
        previous = self.shown if self.carry and self.shown.views is not None else None
        turn = self.shown is not None and self.shown.eyes is self.eye_pairs[0]
        shown.eyes = self.eye_pairs[-1] if turn else self.eye_pairs[0]  # one pair, or two in turn
        if self.options.dump is not None and previous is not None:
            shown.previous = ShownFrame(previous.raw, None, previous.captured, previous.views,
                                        stylized=np.stack([self._read(texture) for texture in previous.eyes]))
        self.compositor.upload(shown.result.tiles, scales=shown.result.scales)
        left, right = self.compositor.composite(shown.eyes)
        height, width = self.source.eye_shape
        consistency = self.options.consistency if shown.views is not None else "off"
        if settings.temporal_consistent(consistency) and previous is not None:
            eyes = (0,) if settings.stereo_consistent(consistency) else (0, 1)  # the right eye takes the left's
            drawn = [self.reprojection.draw(previous.eyes[e], shown.eyes[e], previous.views[e], shown.views[e],
                                            self.options.carry) for e in eyes]
            self.rates.carried = drawn[0] / (height * width)
        if settings.stereo_consistent(consistency):
            drawn = self.reprojection.draw(left, right, *shown.views, fill=FILL_REACH)  # as stereo_skip counts
            self.rates.reprojected = drawn / (height * width)
            skipped = 0 if shown.result.skipped is None else len(shown.result.skipped)
            self.rates.skipped = skipped / len(shown.result.tiles)
        self.shown, self.carry = shown, True
        self.rates.stylized(time.perf_counter(), shown.captured, shown.result, self.options.workers)

    def _read(self, texture: int) -> np.ndarray:
        """(height, width, 3) uint8 top-down pixels of an eye texture."""
        height, width = self.source.eye_shape
        with preserved_state():
            self.reader.attach(texture, GL.GL_READ_FRAMEBUFFER)
            return read_pixels(width, height)

    def _draw(self, frame_size: tuple[int, int]) -> None:
        height, width = self.source.eye_shape
        stylized = self.options.stylized and self.shown is not None
        eyes = self.shown.eyes if stylized else self.raw_textures
        grid, fallback, scales = None, None, None
        if stylized and self.options.show_grid:
            grid, scales = self.compositor.grid, self.shown.result.scales
            fallback = np.zeros(len(self.shown.result.tiles), dtype=bool)
            fallback[list(self.shown.result.fallback)] = True
        self.display.draw(tuple(eyes), (width, height), frame_size, self.options.mode, grid, fallback, scales)
        self.window.glfw.set_window_title(self.window.window, f"vrstyle mirror - {self._status_line()}")
        if self.options.show_figures:
            self.panel.set_text(self._figures_text())
            self.panel.draw(frame_size)

    def _status_line(self) -> str:
        what = self.style if self.options.stylized else "raw"
        return (f"{self.source.name}, {what}, {self.rates.display_fps:.0f} fps shown, "
                f"{self.rates.stylized_fps:.1f} fps stylised, {self.rates.latency_ms:.0f} ms")

    def _figures_text(self) -> str:
        rates, grid = self.rates, self.compositor.grid
        height, width = self.source.eye_shape
        deadline = self.pipeline.deadline_s
        lines = [f"{self.source.name}, {width}x{height} per eye",
                 f"style: {self.style if self.options.stylized else 'raw'}",
                 f"display: {rates.display_fps:.1f} fps",
                 f"stylised: {rates.stylized_fps:.1f} fps ({rates.stylized_frames} frames)",
                 f"latency: {rates.latency_ms:.0f} ms capture to screen{rates.latency_ratio()}",
                 f"late tiles: {rates.late_tiles}" + (f" (deadline {1000 * deadline:.0f} ms)" if deadline else "")
                 + f", lost or failed: {rates.failed_tiles}",
                 f"tiles: {grid.rows}x{grid.cols} per eye, {grid.out_shape[1]}x{grid.out_shape[0]} px"]
        if rates.carried is not None:
            lines.append(f"temporal: {100 * rates.carried:.0f}% of the left eye carries the previous frame's strokes")
        if rates.reprojected is not None:
            lines.append(f"stereo: {100 * rates.reprojected:.0f}% of the right eye from the left eye's strokes, "
                         f"{100 * rates.skipped:.0f}% of the tiles not stylised")
        if self.shown is not None:
            stages = self.shown.result.timings.requests
            lines.append(f"stages: queue {1000 * stages.queue:.0f} ms, inference {1000 * stages.inference:.0f} ms, "
                         f"transfer {1000 * stages.transfer:.0f} ms")
        return "\n".join(lines) + "\n\n" + KEYS_HELP

    def _save(self, frame_size: tuple[int, int]) -> None:
        if self.options.screenshot is not None:
            write_rgb(self.options.screenshot, screenshot(frame_size))
            log.info("screenshot: %s", self.options.screenshot)
        if self.options.dump is not None and self.shown is not None:
            result, grid = self.shown.result, self.compositor.grid
            np.savez_compressed(
                self.options.dump, raw=self.shown.raw, tiles=result.tiles, frame_id=result.frame_id,
                stylized=np.stack([self._read(texture) for texture in self.shown.eyes]),
                **({} if self.shown.previous is None else {
                    "previous": self.shown.previous.stylized, "previous_raw": self.shown.previous.raw,
                    **_views_record(self.shown.previous.views, "previous_")}),
                stats=np.zeros((0, 0), np.float32) if result.stats is None else result.stats,
                fallback=np.array(sorted(result.fallback), dtype=np.int64), style=self.style, ramp=self.pipeline.ramp,
                scales=np.ones(len(result.tiles), np.int8) if result.scales is None else result.scales,
                grid=np.array([grid.height, grid.width, grid.core_h, grid.core_w, grid.rows, grid.cols, grid.halo,
                               grid.overlap]),
                skipped=np.zeros(0, np.int64) if result.skipped is None else result.skipped,
                **_views_record(self.shown.views))
            log.info("frame dump: %s", self.options.dump)


def _views_record(views: list | None, prefix: str = "") -> dict[str, np.ndarray]:
    """Both eyes' depth (2, H, W), views and projections (2, 4, 4) for a frame dump, where known."""
    if views is None:
        return {}
    return {f"{prefix}depth": np.stack([v.depth for v in views]), f"{prefix}views": np.stack([v.view for v in views]),
            f"{prefix}projections": np.stack([v.projection for v in views])}


def _smooth(previous: float, value: float) -> float:
    return value if previous == 0.0 else RATE_SMOOTHING * previous + (1 - RATE_SMOOTHING) * value
