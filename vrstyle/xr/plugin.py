"""The plugin API: stylise the eye textures an OpenXR app rendered, just before it ends the frame.

An existing pyopenxr app keeps its own loop and adds one call per frame, with both eye
textures rendered and still acquired::

    stylizer = Stylizer(pipeline, depth=1)
    ...
    shown = stylizer.apply(frame_state, [left_texture, right_texture], views)
    # build the projection layer from shown[i].pose and shown[i].fov, then xr.end_frame(...)

Frame t's eyes are read back and handed to the workers; the textures are overwritten with
the stylised eyes of frame ``t - depth`` (stitched on the GPU), and the views those eyes were
rendered with are returned, so the runtime reprojects them to the current head pose. The call
never waits past its budget: tiles that miss it come from the previous stylised frame or the
raw render (the pipeline's fallback), so ``xrEndFrame`` goes out on time every frame.

With the app's depth textures (``depth_textures=``, the ones it would share through
``XR_KHR_composition_layer_depth``) and ``Stylizer(consistency=...)``, the right eye shows the
left eye's strokes wherever it sees the same surface (``stereo``), each shown frame carries the
previous one's strokes over where the surface is the same (``temporal``), or both
(:class:`vrstyle.gl.reproject.Reprojection`). With the right eye taking the left's strokes, the
right eye's tiles those strokes will cover are never sent to the workers
(:func:`vrstyle.reproject.stereo_skip`, about 20 ms for a Quest 3 frame on 2 CPU cores).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

import tiles
from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.reproject import FILL_REACH, View, stereo_skip
from vrstyle.resources import Resource
from vrstyle.xr.gaze import eye_centres
from vrstyle.xr.textures import read_depth_texture, read_texture, texture_info, write_texture

log = logging.getLogger(__name__)


@dataclass
class Shown:
    """What a frame's eye textures hold after :meth:`Stylizer.apply`."""

    frame_id: int | None
    """The pipeline frame shown; None while nothing is stylised yet (the raw render is shown)."""
    views: list
    """The views (pose, fov) its eyes were rendered with: submit these in the projection layer."""
    eyes: np.ndarray
    """(2, H, W, 3) uint8 raw eyes of that frame, as sent to the workers."""
    result: object | None = None
    """The pipeline's :class:`~vrstyle.pipeline.FrameResult` (tiles, fallbacks, statistics)."""
    depth: list[View] | None = None
    """Both eyes' matrices and depth maps, where the app gave depth."""


@dataclass
class StylizerCounts:
    """Counts over a session, for the summary line and the tests."""

    frames: int = 0
    """Frames composited."""
    stylized: int = 0
    """Frames showing a pipeline result (fresh or fallback tiles)."""
    raw: int = 0
    """Frames showing the raw render while the pipeline filled."""
    fresh_tiles: int = 0
    fallback_tiles: int = 0
    wait_s: float = 0.0
    """Longest wait for a result within :meth:`Stylizer.apply`."""
    reprojected: float | None = None
    """Share of the right eye's pixels showing the left eye's strokes in the last stylised frame."""
    carried: float | None = None
    """Share of the left eye's pixels carrying the previous frame's strokes in the last stylised frame."""
    skipped: float | None = None
    """Share of the last stylised frame's tiles left out (the left eye's strokes covered them)."""


class Stylizer(Resource):
    """Sends each frame's eyes through the pipeline and composites an earlier frame's result.

    Args:
        pipeline: a :class:`vrstyle.pipeline.FramePipeline` planned for the eye size.
        depth: frames between rendering an eye pair and showing it stylised (0: the same frame,
            waiting up to the budget; N: the workers get N display periods more).
        budget: fraction of a display period :meth:`apply` may wait for a result.
        consistency: where the app gives depth: ``stereo``, the right eye shows the left eye's
            strokes wherever it sees the same surface; ``temporal``, each shown frame carries the
            previous one's over where it sees the same surface; ``both``; ``off``.
        carry: temporal consistency: the previous frame's share there, in (0, 1]; more holds
            strokes stiller and softens them (benchmarks/comfort.py measures both).

    Raises:
        VrstyleError: a negative depth, a budget outside (0, 1], an unknown consistency or a
            carried share outside (0, 1].
    """

    def __init__(self, pipeline, depth: int = settings.XR_PIPELINE_DEPTH, budget: float = settings.XR_FRAME_BUDGET,
                 consistency: str = "off", carry: float = settings.CARRIED):
        if not isinstance(depth, int) or depth < 0:
            raise VrstyleError(f"pipeline depth must be a whole number of frames >= 0, got {depth!r}")
        if not 0.0 < budget <= 1.0:
            raise VrstyleError(f"frame budget must be a fraction of a display period in (0, 1], got {budget}")
        if consistency not in settings.CONSISTENCY:
            raise VrstyleError(f"consistency must be one of {', '.join(settings.CONSISTENCY)}, got {consistency!r}")
        self.pipeline, self.depth, self.budget, self.consistency = pipeline, depth, budget, consistency
        self.carry = settings.check_carry(carry)
        if settings.stereo_consistent(consistency):
            from vrstyle.kernels.coverage import warm_up

            warm_up()
        pipeline.hold(depth + 1)  # frames t - depth .. t are in flight together
        self.interval: float | None = None
        self._last_start: float | None = None
        self.pending: deque[Shown] = deque()
        self.compositor = self.reprojection = self.history = None
        self._history_depth: list[View] | None = None  # the views of the frame in ``history``
        self.shown: Shown | None = None
        self.submitted: int | None = None
        self.counts = StylizerCounts()
        self._reads: deque[np.ndarray] = deque()  # eye arrays read into, oldest first

    def apply(self, frame_state, textures: Sequence[int], views: Sequence, started: float | None = None,
              gaze: np.ndarray | None = None, depth_textures: Sequence[int] | None = None,
              near: float = settings.XR_NEAR, far: float = settings.XR_FAR) -> list:
        """Stylise the app's eye textures in place; returns the views to submit with them.

        Args:
            frame_state: this frame's ``xr.FrameState`` (its display period sets the deadlines).
            textures: the two eye textures (GL_TEXTURE_2D names, e.g. swapchain images), any
                colour format, rendered and still acquired, with the app's GL context current.
            views: the ``xr.View`` each texture was rendered with.
            started: ``time.monotonic()`` when xrWaitFrame returned (default: now).
            gaze: with a foveated pipeline, the gaze direction in the views' space (e.g.
                :meth:`vrstyle.xr.gaze.GazeTracker.direction`); None: each eye's optical centre.
            depth_textures: the two eye depth textures (GL_TEXTURE_2D of a depth format, the
                eyes' size) the views were rendered with, for consistency; None: none.
            near, far: the distances of the projection's near and far planes the depth was
                rendered with (``nearZ``, ``farZ`` of ``XrCompositionLayerDepthInfoKHR``).

        Returns:
            The views of the frame now in the textures (the given ones while the pipeline fills).

        Raises:
            GLError: a depth texture not of a depth format or not the eyes' size.
        """
        eyes = self._read_eyes(textures)
        depth = None if depth_textures is None else np.stack([read_depth_texture(t, eyes.shape[1:3])
                                                             for t in depth_textures])
        return self.process(frame_state, eyes, views, textures, started, gaze, depth, near, far)

    def _read_eyes(self, textures: Sequence[int]) -> np.ndarray:
        """The textures' (2, H, W, 3) upright images, read bottom-up: straight into the
        pipeline's shared frame ring where it has one (no copy on submit), else into an array
        read into ``depth + 2`` frames ago (the frames pending and the one shown keep theirs)."""
        width, height, _ = texture_info(textures[0])
        shape = (len(textures), height, width, 3)
        into = self.pipeline.frame_buffer(3)
        if into is None or into.shape != shape:
            if self._reads and self._reads[0].shape != shape:  # new swapchains
                self._reads.clear()
            if len(self._reads) < self.depth + 2:
                self._reads.append(np.empty(shape, np.uint8))
            else:
                self._reads.rotate(-1)
            into = self._reads[-1]
        for eye, texture in zip(into, textures):
            read_texture(texture, eye)
        return into[:, ::-1]

    def process(self, frame_state, eyes: np.ndarray, views: Sequence, targets: Sequence[int],
                started: float | None = None, gaze: np.ndarray | None = None, depth: np.ndarray | None = None,
                near: float = settings.XR_NEAR, far: float = settings.XR_FAR) -> list:
        """:meth:`apply` for eyes already in memory, composited into ``targets``.

        Args:
            eyes: (2, H, W, 3) uint8 upright sRGB eye images of this frame.
            targets: the two textures to composite the shown frame into.
            depth: (2, H, W) float top-down window depths (0 at ``near``, 1 at ``far``) of the eyes.

        Raises:
            VrstyleError: depth maps not of the eyes' size.
        """
        if depth is not None and np.shape(depth) != eyes.shape[:3]:
            raise VrstyleError(f"depth maps are {np.shape(depth)}, the eyes {eyes.shape[:3]}")
        depth_views = None if depth is None else [View(v, p, d) for v, p, d in zip(*eye_matrices(views, near, far),
                                                                                      depth)]
        start = time.monotonic() if started is None else started
        period = frame_state.predicted_display_period / 1e9
        interval = self._frame_interval(start, period)
        deadline_s = self.depth * interval + self.budget * period  # due when its display slot comes
        centres = None if self.pipeline.rings is None else eye_centres(views, eyes.shape[1:3], gaze)
        stereo = settings.stereo_consistent(self.consistency) and depth_views is not None
        skip = stereo_skip(self.pipeline.grid, depth_views) if stereo else None
        self.submitted = self.pipeline.submit(eyes, deadline_s=deadline_s, centres=centres, skip=skip)
        self.pending.append(Shown(self.submitted, list(views), eyes, depth=depth_views))
        if len(self.pending) <= self.depth:  # the pipeline is filling: show this frame unstylised
            shown, frame_tiles, scales = Shown(None, list(views), eyes), self._raw_tiles(eyes), None
            self.counts.raw += 1
        else:
            shown = self.pending.popleft()
            waited = time.monotonic()
            self.pipeline.ready(shown.frame_id)  # takes in tiles that arrived, even past the deadline
            budget_left = max(start + self.budget * period - waited, 0.0)
            shown.result = self.pipeline.result(shown.frame_id, timeout=budget_left)
            self.counts.wait_s = max(self.counts.wait_s, time.monotonic() - waited)
            frame_tiles, scales = shown.result.tiles, shown.result.scales
            self.counts.stylized += 1
            self.counts.fallback_tiles += len(shown.result.fallback)
            skipped = 0 if shown.result.skipped is None else len(shown.result.skipped)
            self.counts.fresh_tiles += len(frame_tiles) - len(shown.result.fallback) - skipped
            self.counts.skipped = None if shown.result.skipped is None else skipped / len(frame_tiles)
        self._composite(frame_tiles, scales, targets)
        if self.consistency != "off" and shown.depth is not None and shown.result is not None:
            self._reproject(list(targets), shown.depth)
        else:
            self._history_depth = None
        self.counts.frames += 1
        self.shown = shown
        return shown.views

    def reset(self) -> None:
        """Forget frames in flight (after a session loss: their views belong to a dead session)."""
        self.pending.clear()
        self._last_start = None
        self._history_depth = None

    def _frame_interval(self, start: float, period: float) -> float:
        """Seconds between this app's frames: the display period, or more when the app runs slower
        (a frame's result is needed ``depth`` of these after it was submitted)."""
        if self._last_start is not None:
            measured = start - self._last_start
            self.interval = measured if self.interval is None else 0.8 * self.interval + 0.2 * measured
        self._last_start = start
        return max(period, self.interval or 0.0)

    def _free(self) -> None:
        """Free the GL objects (the context must be current); the pipeline is its owner's."""
        self._drop_compositor()

    def _drop_compositor(self) -> None:
        if self.compositor is not None:
            self.compositor.close()
            self.compositor = None
        self._drop_consistency()

    def _drop_consistency(self) -> None:
        for owned in (self.reprojection, self.history):
            if owned is not None:
                owned.close()
        self.reprojection = self.history = self._history_depth = None

    def _reproject(self, targets: list[int], depth: list[View]) -> None:
        """The consistency passes: the previous shown frame's strokes carried over where the
        surface is the same, then the right eye taking the left eye's; the eyes kept for the next."""
        from vrstyle.gl.reproject import EyeHistory, Reprojection
        from vrstyle.gl.textures import texture_format

        height, width = depth[0].depth.shape
        if self.reprojection is None or (self.reprojection.height, self.reprojection.width) != (height, width):
            self._drop_consistency()  # new eyes: nothing to carry over
            self.reprojection = Reprojection(width, height)
        temporal = settings.temporal_consistent(self.consistency)
        if temporal and self._history_depth is not None:
            eyes = (0,) if settings.stereo_consistent(self.consistency) else (0, 1)  # the right eye takes the left's
            drawn = [self.reprojection.draw(self.history.textures[e], targets[e], self._history_depth[e], depth[e],
                                            self.carry) for e in eyes]
            self.counts.carried = drawn[0] / (height * width)
        if settings.stereo_consistent(self.consistency):
            drawn = self.reprojection.draw(targets[0], targets[1], *depth, fill=FILL_REACH)  # as stereo_skip counts
            self.counts.reprojected = drawn / (height * width)
        if temporal:
            internal = texture_format(targets[0])
            if self.history is None or self.history.internal_format != internal:
                if self.history is not None:
                    self.history.close()
                self.history = EyeHistory(width, height, internal)
            self.history.keep(targets)
            self._history_depth = depth

    def _raw_tiles(self, eyes: np.ndarray) -> np.ndarray:
        grid = self.pipeline.grid
        return tiles.crop_halo(tiles.cut(eyes, grid), grid)

    def _composite(self, frame_tiles: np.ndarray, scales: np.ndarray | None, targets: Sequence[int]) -> None:
        """Stitch the tiles into the targets on the GPU.

        sRGB targets (what runtimes offer first) are written directly. Linear ones hold linear
        light (OpenXR's reading of non-sRGB swapchains): the stitched sRGB eyes are decoded on
        the way in, a slower path through host memory.
        """
        from vrstyle.gl.compositor import Compositor

        if self.compositor is None or self.compositor.grid != self.pipeline.grid:
            self._drop_compositor()
            self.compositor = Compositor(self.pipeline.grid, self.pipeline.ramp)
        self.compositor.upload(frame_tiles, scales=scales)
        if all(texture_info(target)[2] for target in targets):
            self.compositor.composite(list(targets))
            return
        self.compositor.composite()
        for eye, target in enumerate(targets):
            write_texture(target, self.compositor.read(eye))


def pose_array(views) -> np.ndarray:
    """(N, 11) position xyz, orientation xyzw, fov left right up down of each view."""
    return np.array([[v.pose.position.x, v.pose.position.y, v.pose.position.z,
                      v.pose.orientation.x, v.pose.orientation.y, v.pose.orientation.z, v.pose.orientation.w,
                      v.fov.angle_left, v.fov.angle_right, v.fov.angle_up, v.fov.angle_down] for v in views])


def eye_matrices(views, near: float = settings.XR_NEAR, far: float = settings.XR_FAR) -> tuple[np.ndarray, np.ndarray]:
    """(views (2, 4, 4) world-to-eye, projections (2, 4, 4)) of located OpenXR views."""
    from vrstyle.gl import transforms

    poses = pose_array(views)
    view_matrices = np.stack([np.linalg.inv(transforms.pose_matrix(p[0:3], p[3:7])) for p in poses])
    projections = np.stack([transforms.fov_projection(*p[7:11], near=near, far=far) for p in poses])
    return view_matrices, projections
