"""The headset application: the demo scene for the headset's eyes, stylised, on time, every frame.

Each frame: wait for the runtime's pacing, locate both views at the predicted display time,
render the scene with them at the recommended eye size, hand the eyes to the pipeline through
the :class:`~vrstyle.xr.plugin.Stylizer` (the same plugin API other apps use), composite the
stylised eyes of an earlier frame straight into the swapchain images and submit them in a
projection layer with the poses they were rendered with.

A lost runtime (service stopped, headset unplugged) does not end the app: the session is
dropped, the runtime is looked for again, and frames resume in a new session with the same GL
context, scene and workers.
"""

from __future__ import annotations

import ctypes
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import xr

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.progress import progress_bar
from vrstyle.xr.gaze import GAZE_EXTENSION
from vrstyle.xr.plugin import eye_matrices, pose_array
from vrstyle.xr.runtime import (
    LOST, choose_binding, open_runtime, runtime_extensions, use_gl_platform,
)

log = logging.getLogger(__name__)


@dataclass
class HeadsetOptions:
    """What ``vrstyle headset`` was asked to do (defaults in :mod:`vrstyle.settings`)."""

    graphics: str = "auto"
    depth: int = settings.XR_PIPELINE_DEPTH
    frames: int = 0
    """Stop after this many frames (0: run until the runtime ends the session)."""
    mirror: bool = False
    reconnect_s: float = settings.XR_RECONNECT_TIMEOUT_S
    """How long to look for a lost runtime before giving up (0: do not reconnect)."""
    record: Path | None = None
    record_every: int = 10
    foveation: str = "off"
    """``off``, ``fixed`` (rings on each eye's optical centre) or ``gaze`` (on the gaze point
    where the headset tracks the eyes, else fixed)."""
    consistency: str = "off"
    """``off``, ``stereo``, ``temporal`` or ``both`` (:class:`~vrstyle.xr.plugin.Stylizer`),
    with the demo scene's depth."""
    carry: float = settings.CARRIED
    """Temporal consistency: the previous frame's share where it reprojects onto the same surface."""


@dataclass
class HeadsetReport:
    """What happened, for the summary line, ``summary.json`` and the tests."""

    frames: int = 0
    """Frames ended with xrEndFrame, in all sessions."""
    layers: int = 0
    """Frames that submitted a projection layer."""
    stylized: int = 0
    """Frames that showed a stylised pipeline result."""
    sessions: int = 0
    losses: int = 0
    fresh_tiles: int = 0
    fallback_tiles: int = 0
    """Tiles shown from the previous stylised frame or the raw render because they were late or lost."""
    reprojected: float | None = None
    """Share of the right eye's pixels showing the left eye's strokes in the last stylised frame."""
    depth_layers: int = 0
    """Frames whose projection layer carried each eye's depth (``XR_KHR_composition_layer_depth``)."""
    frames_in_place: int = 0
    """Frames read back straight into the pipeline's shared frame ring (nothing copied to submit them)."""
    carried: float | None = None
    """Share of the left eye's pixels carrying the previous frame's strokes in the last stylised frame."""
    skipped: float | None = None
    """Share of the last stylised frame's tiles left out (the left eye's strokes covered them)."""
    max_frame_interval_s: float = 0.0
    """Longest time between two successive frames of one session (the runtime paces them)."""
    seconds: float = 0.0
    eye_size: tuple[int, int] = (0, 0)
    swapchain_format: str = ""
    recorded: list[str] = field(default_factory=list)


class HeadsetApp:
    """Runs sessions until the runtime ends one, the frame count is reached, or the runtime stays lost.

    Args:
        options: what to do.
        make_pipeline: builds the frame pipeline for an eye size ``(height, width)``; called
            once the runtime has said what size it recommends.
    """

    def __init__(self, options: HeadsetOptions, make_pipeline: Callable[[int, int], object]):
        self.options = options
        self.make_pipeline = make_pipeline
        self.report = HeadsetReport()
        self.pipeline = self.scene = self.stylizer = self.mirror = self.gaze = None
        self.first_display_time: int | None = None
        self._layer = None
        self.timeline = None

    def run(self) -> HeadsetReport:
        """Run until done; raises :class:`VrstyleError` if the runtime cannot be used at all."""
        from vrstyle.xr.graphics import create_context

        extensions = runtime_extensions()
        requested = "glx" if self.options.mirror and self.options.graphics == "auto" else self.options.graphics
        binding = choose_binding(extensions, requested)
        use_gl_platform(binding)
        optional = ((GAZE_EXTENSION,) if self.options.foveation == "gaze" else ()) + \
            ((xr.KHR_COMPOSITION_LAYER_DEPTH_EXTENSION_NAME,) if self.options.consistency != "off" else ())
        runtime = open_runtime(binding, extensions, optional=optional)
        if self.options.record is not None and self.timeline is None:  # made once the runtime is up: no empty folders
            self.options.record.mkdir(parents=True, exist_ok=True)
            self.timeline = open(self.options.record / "timeline.jsonl", "w")
        context = None
        start = time.monotonic()
        bar = progress_bar(total=self.options.frames or None, unit="frame", desc="headset")
        try:
            context = create_context(binding, self.options.mirror)
            while not self._session(runtime, binding, context, bar):
                runtime.close()
                runtime = self._reconnect(binding, extensions, optional)
        except xr.XrException as exc:  # not a lost runtime: a failure the runtime reported
            raise VrstyleError(f"the OpenXR runtime failed: {type(exc).__name__}: {exc}") from None
        finally:
            bar.close()
            self.report.seconds = time.monotonic() - start
            self._close(context, runtime)
        return self.report

    def _session(self, runtime, binding: str, context, bar) -> bool:
        """One session; True when it ended for good (exit, frame count), False when it was lost."""
        from vrstyle.xr.session import HeadsetSession

        try:
            session = HeadsetSession(runtime, binding, context)
        except LOST as exc:
            self._lost(exc)
            return False
        self.report.sessions += 1
        last_end = None
        try:
            self._prepare(session)
            if self.options.foveation == "gaze":
                from vrstyle.xr.gaze import open_gaze

                self.gaze = open_gaze(runtime, session.session, session.space)
                if self.gaze is None:  # said once: later sessions stay fixed
                    self.options.foveation = "fixed"
            for frame in session.frames():
                if last_end is not None:
                    interval = time.monotonic() - last_end
                    self.report.max_frame_interval_s = max(self.report.max_frame_interval_s, interval)
                if self.options.frames and self.report.frames >= self.options.frames:
                    session.request_exit()
                if frame.views and not session.exit_requested:
                    self._draw(session, frame)
                    self.report.layers += 1
                self.report.frames += 1
                bar.update()
                if self.stylizer is not None and self.report.frames % 30 == 0:
                    counts = self.stylizer.counts
                    late = counts.fallback_tiles / max(counts.fallback_tiles + counts.fresh_tiles, 1)
                    bar.set_postfix(late_tiles=f"{late:.0%}", losses=self.report.losses, refresh=False)
                last_end = time.monotonic()  # the loop ends the frame before the next comes
            if session.lost:
                self._lost("the runtime is losing the session")
                return False
            return True
        except LOST as exc:
            self._lost(exc)
            return False
        finally:
            if self.gaze is not None:
                self.gaze.close()
                self.gaze = None
            session.close()
            self._layer = None
            if self.stylizer is not None:
                self.stylizer.reset()

    def _prepare(self, session) -> None:
        """Scene, pipeline and stylizer for the session's eye size (kept across reconnects)."""
        from vrstyle.gl.scene import DemoScene
        from vrstyle.xr.plugin import Stylizer

        sizes = set(session.sizes)
        if len(sizes) != 1:
            raise VrstyleError(f"the headset recommends different eye sizes {sorted(sizes)}; vrstyle needs one")
        width, height = sizes.pop()
        self.report.eye_size, self.report.swapchain_format = (width, height), session.swapchains.colour.name
        if self.scene is not None and (self.scene.width, self.scene.height) == (width, height):
            return
        self._release_gl()
        self.scene = DemoScene(height, width, keep_depth=self.options.consistency != "off")
        if self.pipeline is None or (self.pipeline.grid.width, self.pipeline.grid.height) != (width, height):
            self._close_pipeline()
            self.pipeline = self.make_pipeline(height, width)
        self.stylizer = Stylizer(self.pipeline, depth=self.options.depth, consistency=self.options.consistency,
                                 carry=self.options.carry)
        if self.options.mirror:
            from vrstyle.xr.mirror import HeadsetMirror

            self.mirror = HeadsetMirror(session.context)

    def _draw(self, session, frame) -> None:
        if self.first_display_time is None:
            self.first_display_time = frame.state.predicted_display_time
        scene_time = (frame.state.predicted_display_time - self.first_display_time) / 1e9
        targets = session.swapchains.acquire()
        try:
            self.scene.render(*eye_matrices(frame.views), scene_time)
            eyes = self.scene.read(self.pipeline.frame_buffer(3))  # straight into shared memory (same size)
            depth = self.scene.read_depth() if self.options.consistency != "off" else None
            gaze = None if self.gaze is None else self.gaze.direction(frame.state.predicted_display_time)
            shown_views = self.stylizer.process(frame.state, eyes, frame.views, targets, started=frame.started,
                                                gaze=gaze, depth=depth)
            shown = self.stylizer.shown
            if self.timeline is not None:
                self.timeline.write(json.dumps({
                    "frame": self.report.frames, "submitted": self.stylizer.submitted, "shown": shown.frame_id,
                    "located": pose_array(frame.views).tolist(), "poses": pose_array(shown_views).tolist()}) + "\n")
                if frame.index % self.options.record_every == 0:
                    self._record(targets)
            if self.mirror is not None and not self.mirror.show(targets, session.sizes[0]):
                session.request_exit()
            depth_range = self._submit_depth(session, depth)
        finally:
            session.swapchains.release()
        self._layer = session.projection_layer(shown_views, depth_range)  # alive until xrEndFrame has read it
        frame.layers = [ctypes.byref(self._layer)]

    def _submit_depth(self, session, depth: np.ndarray | None) -> tuple[float, float] | None:
        """The shown frame's depth (this frame's while the pipeline fills) into the acquired depth
        images; the (near, far) range it was rendered with, or None where nothing was written."""
        from vrstyle.xr.textures import write_depth_texture

        shown = self.stylizer.shown
        maps = np.stack([view.depth for view in shown.depth]) if shown.depth is not None else depth
        if maps is None or not session.swapchains.acquired_depth:
            return None
        for texture, eye in zip(session.swapchains.acquired_depth, maps):
            write_depth_texture(texture, eye)
        self.report.depth_layers += 1
        return settings.XR_NEAR, settings.XR_FAR

    def _record(self, targets) -> None:
        """Save what this frame submitted, with what it came from, for checking offline."""
        from vrstyle.xr.textures import read_texture

        shown = self.stylizer.shown
        if shown.result is None:
            return
        result, grid = shown.result, shown.result.grid
        fallback = sorted(result.fallback.items())
        arrays = dict(
            submitted=np.stack([read_texture(t) for t in targets]), raw=shown.eyes, tiles=result.tiles,
            frame_id=shown.frame_id, stats=np.zeros(0) if result.stats is None else result.stats,
            fallback=np.array([index for index, _ in fallback], dtype=np.int64),
            fallback_source=np.array([f.source for _, f in fallback], dtype=str),
            skipped=np.zeros(0, np.int64) if result.skipped is None else result.skipped,
            grid=np.array([grid.height, grid.width, grid.core_h, grid.core_w, grid.rows, grid.cols, grid.halo,
                           grid.overlap]), ramp=result.ramp,
            scales=np.ones(len(result.tiles), np.int8) if result.scales is None else result.scales,
            **({} if shown.depth is None else {"depth": np.stack([v.depth for v in shown.depth]),
                                               "views": np.stack([v.view for v in shown.depth]),
                                               "projections": np.stack([v.projection for v in shown.depth])}))
        path = self.options.record / f"frame{self.report.frames:05d}.npz"
        partial = path.with_suffix(".partial")
        with open(partial, "wb") as out:
            np.savez_compressed(out, **arrays)
        partial.replace(path)  # whole files only, for whoever watches the folder
        self.report.recorded.append(path.name)

    def _lost(self, reason) -> None:
        self.report.losses += 1
        log.warning("OpenXR runtime lost (%s)%s", reason,
                    "; looking for it again" if self.options.reconnect_s > 0 else "")

    def _reconnect(self, binding: str, extensions: list[str], optional: tuple[str, ...]):
        """The runtime again; :class:`VrstyleError` when it stays away for the reconnect timeout."""
        deadline = time.monotonic() + self.options.reconnect_s
        while time.monotonic() < deadline:
            time.sleep(settings.XR_RECONNECT_INTERVAL_S)
            try:
                runtime = open_runtime(binding, extensions, optional=optional)
            except VrstyleError as exc:
                log.debug("runtime not back yet: %s", exc)
                continue
            log.warning("OpenXR runtime back: %s", runtime.runtime_name)
            return runtime
        raise VrstyleError(f"the OpenXR runtime went away and did not come back within "
                           f"{self.options.reconnect_s:g} s (--reconnect-timeout)")

    def _close_pipeline(self) -> None:
        if self.pipeline is not None:
            self.report.frames_in_place += self.pipeline.counters["ring_frames_in_place"]
            self.pipeline.close()
            self.pipeline = None

    def _release_gl(self) -> None:
        if self.stylizer is not None:
            counts = self.stylizer.counts
            self.report.stylized += counts.stylized
            self.report.fresh_tiles += counts.fresh_tiles
            self.report.fallback_tiles += counts.fallback_tiles
            for share in ("reprojected", "carried", "skipped"):
                if getattr(counts, share) is not None:
                    setattr(self.report, share, getattr(counts, share))
        for part in (self.stylizer, self.scene, self.mirror):
            if part is not None:
                part.close()
        self.stylizer = self.scene = self.mirror = None

    def _close(self, context, runtime) -> None:
        if context is not None:
            self._release_gl()
            context.close()
        self._close_pipeline()
        if runtime is not None:
            runtime.close()
        if self.timeline is not None:
            self.timeline.close()
            (self.options.record / "summary.json").write_text(json.dumps(asdict(self.report), indent=1))

