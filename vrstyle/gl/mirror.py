"""The desktop mirror: a window showing a stereo source stylised through the pipeline.

The render thread draws at the display's rate and never waits for stylisation: frames go to
the pipeline on a background thread (newest frame wins), and each stylised result is stitched
by the GPU compositor when it arrives, with the newest one shown until the next.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from OpenGL import GL

from vrstyle.gl.compositor import Compositor
from vrstyle.gl.context import WindowContext
from vrstyle.gl.display import EyeDisplay, TextPanel, ViewMode, screenshot
from vrstyle.gl.textures import create_texture, upload_image
from vrstyle.images import write_rgb
from vrstyle.sources import FrameSource

log = logging.getLogger(__name__)

KEYS_HELP = (
    "Right/Left: next/previous style\n"
    "Space: raw/stylised\n"
    "G: tile grid (red: tiles that fell back)\n"
    "I: statistics\n"
    "V: side by side, left, right, anaglyph\n"
    "PgDn/PgUp: next/previous photo\n"
    "Esc, Q: quit"
)
RATE_SMOOTHING = 0.9
"""Weight of the past in the frame-rate and latency averages shown."""


@dataclass
class MirrorOptions:
    """What the mirror shows and when it stops."""

    styles: list[str]
    style_index: int = 0
    stylised: bool = True
    show_grid: bool = False
    show_stats: bool = False
    mode: ViewMode = ViewMode.SIDE_BY_SIDE
    frames: int | None = None
    """Quit after this many frames were shown, counting only stylised ones while stylising (None: run until closed)."""
    screenshot: Path | None = None
    """Where to save the window's last frame on quitting."""
    dump: Path | None = None
    """Where to save the shown frame's raw eyes, stylised eyes and statistics (.npz) on quitting."""


@dataclass
class Shown:
    """A stylised frame on screen and what it came from."""

    frame_id: int
    raw: np.ndarray
    result: object
    captured: float


@dataclass
class Rates:
    display_fps: float = 0.0
    displayed_frames: int = 0
    stylised_fps: float = 0.0
    latency_ms: float = 0.0
    stylised_frames: int = 0
    late_tiles: int = 0
    last_display: float = field(default_factory=time.perf_counter)
    last_result: float | None = None

    def displayed(self, now: float) -> None:
        self.display_fps = _smooth(self.display_fps, 1.0 / max(now - self.last_display, 1e-6))
        self.last_display = now
        self.displayed_frames += 1

    def stylised(self, now: float, captured: float, late: int) -> None:
        if self.last_result is not None:
            self.stylised_fps = _smooth(self.stylised_fps, 1.0 / max(now - self.last_result, 1e-6))
        self.latency_ms = _smooth(self.latency_ms, 1000.0 * (now - captured))
        self.last_result = now
        self.stylised_frames += 1
        self.late_tiles += late


class Stylist:
    """Runs ``stylise(frame, style) -> result`` on a background thread, newest frame first.

    A frame submitted while the previous one is still being stylised replaces any frame
    still waiting: the mirror shows the newest scene, never a backlog.
    """

    def __init__(self, stylise: Callable[[np.ndarray, str], object]):
        self.stylise = stylise
        self.waiting: queue.Queue = queue.Queue(maxsize=1)
        self.done: queue.Queue = queue.Queue()
        self.busy = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="vrstyle-stylist", daemon=True)
        self.thread.start()

    def idle(self) -> bool:
        return not self.busy.is_set() and self.waiting.empty()

    def submit(self, frame_id: int, frame: np.ndarray, style: str, captured: float) -> None:
        try:
            self.waiting.get_nowait()
        except queue.Empty:
            pass
        self.waiting.put((frame_id, frame, style, captured))

    def results(self) -> list[tuple[int, np.ndarray, object, float]]:
        """Finished (frame id, raw frame, result, capture time), oldest first; errors re-raised here."""
        out = []
        while True:
            try:
                item = self.done.get_nowait()
            except queue.Empty:
                return out
            if isinstance(item, BaseException):
                raise item
            out.append(item)

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                frame_id, frame, style, captured = self.waiting.get(timeout=0.1)
            except queue.Empty:
                continue
            self.busy.set()
            try:
                self.done.put((frame_id, frame, self.stylise(frame, style), captured))
            except BaseException as exc:  # handed to the render thread, which reports it
                self.done.put(exc)
                return
            finally:
                self.busy.clear()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)


class Mirror:
    """The mirror window's loop: source -> stylist -> compositor -> display.

    Args:
        window: the window (its context current).
        source: stereo frames: ``source.frame(t)`` and ``source.step(n)``.
        stylist: the pipeline on its thread (None: raw only).
        options: what to show, when to stop.
        fallback_mask: result -> (2 * tiles,) bools of tiles that fell back (for the grid overlay).
        late_tiles: result -> tiles that missed the deadline (for the statistics).
    """

    def __init__(self, window: WindowContext, source: FrameSource, stylist: Stylist | None, options: MirrorOptions,
                 fallback_mask: Callable[[object], np.ndarray], late_tiles: Callable[[object], int]):
        import glfw

        self.window, self.source, self.stylist, self.options = window, source, stylist, options
        self.fallback_mask, self.late_tiles = fallback_mask, late_tiles
        self.display, self.panel = EyeDisplay(), TextPanel()
        height, width = source.eye_shape
        self.raw_textures = [create_texture(width, height) for _ in range(2)]
        self.compositor: Compositor | None = None
        self.shown: Shown | None = None
        self.rates = Rates()
        self.frame_id = 0
        self.started = time.perf_counter()
        self.quit = False
        glfw.set_key_callback(window.window, self._on_key)

    def _on_key(self, window, key, scancode, action, mods) -> None:
        import glfw

        if action != glfw.PRESS:
            return
        options = self.options
        if key in (glfw.KEY_ESCAPE, glfw.KEY_Q):
            self.quit = True
        elif key in (glfw.KEY_RIGHT, glfw.KEY_LEFT) and options.styles:
            options.style_index = (options.style_index + (1 if key == glfw.KEY_RIGHT else -1)) % len(options.styles)
        elif key == glfw.KEY_SPACE:
            options.stylised = not options.stylised
        elif key == glfw.KEY_G:
            options.show_grid = not options.show_grid
        elif key == glfw.KEY_I:
            options.show_stats = not options.show_stats
        elif key == glfw.KEY_V:
            options.mode = options.mode.next()
        elif key in (glfw.KEY_PAGE_DOWN, glfw.KEY_PAGE_UP):
            self.source.step(1 if key == glfw.KEY_PAGE_DOWN else -1)

    @property
    def style(self) -> str:
        return self.options.styles[self.options.style_index] if self.options.styles else ""

    def run(self) -> Rates:
        """Loop until the window closes, Esc/Q, or ``options.frames`` frames were shown."""
        frame_size = self.window.framebuffer_size()
        while not (self.quit or self.window.should_close()):
            now = time.perf_counter()
            raw = self.source.frame(now - self.started)
            for texture, eye in zip(self.raw_textures, raw):
                upload_image(texture, eye)
            if self.stylist is not None and self.options.stylised and self.stylist.idle():
                self.frame_id += 1
                self.stylist.submit(self.frame_id, raw, self.style, now)
            if self.stylist is not None:
                for frame_id, frame, result, captured in self.stylist.results():
                    self._show(Shown(frame_id, frame, result, captured))
            frame_size = self.window.framebuffer_size()
            self._draw(frame_size)
            stylising = self.stylist is not None and self.options.stylised
            count = self.rates.stylised_frames if stylising else self.rates.displayed_frames + 1
            done = self.options.frames is not None and count >= self.options.frames
            if done or self.quit:
                self._save(frame_size)
                break
            self.window.swap()
            self.rates.displayed(time.perf_counter())
        return self.rates

    def _show(self, shown: Shown) -> None:
        result = shown.result
        if self.compositor is None or self.compositor.grid != result.grid:
            if self.compositor is not None:
                self.compositor.delete()
            self.compositor = Compositor(result.grid)
        self.compositor.upload(result.tiles)
        self.compositor.composite()
        self.shown = shown
        self.rates.stylised(time.perf_counter(), shown.captured, self.late_tiles(result))

    def _draw(self, frame_size: tuple[int, int]) -> None:
        height, width = self.source.eye_shape
        stylised = self.options.stylised and self.compositor is not None
        eyes = self.compositor.eye_textures if stylised else self.raw_textures
        grid = self.compositor.grid if (stylised and self.options.show_grid) else None
        fallback = self.fallback_mask(self.shown.result) if grid is not None else None
        self.display.draw(tuple(eyes), (width, height), frame_size, self.options.mode, grid, fallback)
        title = self._status_line()
        self.window.glfw.set_window_title(self.window.window, f"vrstyle mirror - {title}")
        if self.options.show_stats:
            self.panel.set_text(self._stats_text())
            self.panel.draw(frame_size)

    def _status_line(self) -> str:
        mode = f"{self.style}" if self.options.stylised and self.stylist is not None else "raw"
        return (f"{self.source.name}, {mode}, {self.rates.display_fps:.0f} fps shown, "
                f"{self.rates.stylised_fps:.1f} fps stylised, {self.rates.latency_ms:.0f} ms")

    def _stats_text(self) -> str:
        rates = self.rates
        height, width = self.source.eye_shape
        lines = [f"{self.source.name}, {width}x{height} per eye",
                 f"style: {self.style if self.options.stylised else 'raw'}",
                 f"display: {rates.display_fps:.1f} fps",
                 f"stylised: {rates.stylised_fps:.1f} fps ({rates.stylised_frames} frames)",
                 f"latency: {rates.latency_ms:.0f} ms capture to screen",
                 f"late tiles: {rates.late_tiles}"]
        if self.compositor is not None:
            grid = self.compositor.grid
            lines.append(f"tiles: {grid.rows}x{grid.cols} per eye, {grid.out_shape[1]}x{grid.out_shape[0]} px")
        return "\n".join(lines) + "\n\n" + KEYS_HELP

    def _save(self, frame_size: tuple[int, int]) -> None:
        if self.options.screenshot is not None:
            write_rgb(self.options.screenshot, screenshot(frame_size))
            log.info("screenshot: %s", self.options.screenshot)
        if self.options.dump is not None and self.shown is not None:
            result = self.shown.result
            np.savez_compressed(self.options.dump, raw=self.shown.raw, frame_id=self.shown.frame_id,
                                stylised=np.stack([self.compositor.read(0), self.compositor.read(1)]),
                                **self.dump_fields(result))

    dump_fields: Callable[[object], dict] = staticmethod(lambda result: {})

    def close(self) -> None:
        if self.stylist is not None:
            self.stylist.stop()
        if self.compositor is not None:
            self.compositor.delete()
        self.display.delete()
        self.panel.delete()
        GL.glDeleteTextures(self.raw_textures)


def _smooth(previous: float, value: float) -> float:
    return value if previous == 0.0 else RATE_SMOOTHING * previous + (1 - RATE_SMOOTHING) * value
