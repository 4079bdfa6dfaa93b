"""An OpenXR session with OpenGL: lifecycle, stereo views, eye swapchains and the frame loop.

Lifecycle as the specification has it: ``xrBeginSession`` on READY, ``xrEndSession`` on
STOPPING, leave on EXITING, and on LOSS_PENDING (or a lost instance) leave so the caller can
reconnect. Every frame waits for the runtime's pacing, locates both views at the predicted
display time and ends with the layers the caller set, on time.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import time
from dataclasses import dataclass, field
from typing import Iterator

import xr
import xr.utils

from vrstyle.errors import VrstyleError
from vrstyle.resources import Resource
from vrstyle.xr.graphics import session_binding
from vrstyle.xr.runtime import Runtime, opengl_requirements
from vrstyle.xr.swapchain import EyeSwapchains, choose_format

log = logging.getLogger(__name__)

STEREO = xr.ViewConfigurationType.PRIMARY_STEREO
IDLE_POLL_S = 0.01
"""Event polling interval while the session is not running (no xrWaitFrame to pace us)."""


@dataclass
class Frame:
    """One frame of the loop: set ``layers`` before the loop ends it."""

    index: int
    state: xr.FrameState
    views: list = field(default_factory=list)
    """Located views (pose, fov) at the predicted display time; empty when nothing should render."""
    started: float = 0.0
    """``time.monotonic()`` when xrWaitFrame returned."""
    layers: list = field(default_factory=list)


def check_gl_version(minimum: xr.Version, maximum: xr.Version) -> None:
    """Refuse a current GL context older than the runtime supports (:class:`VrstyleError`)."""
    from vrstyle.gl.context import current_version

    have = current_version()
    if have < (minimum.major, minimum.minor):
        raise VrstyleError(f"the OpenXR runtime needs OpenGL {minimum.major}.{minimum.minor} to "
                           f"{maximum.major}.{maximum.minor}; this context is {have[0]}.{have[1]}")


class HeadsetSession(Resource):
    """A running OpenXR session drawing with the current GL context.

    Args:
        runtime: instance and headset (:func:`~vrstyle.xr.runtime.open_runtime`).
        binding: ``egl``, ``glx`` or ``wgl``, matching ``context``.
        context: the GL context (vrstyle.gl's), current on this thread.

    Raises:
        xr.SessionLostError, xr.InstanceLostError: the runtime went away (as from every call here).
    """

    def __init__(self, runtime: Runtime, binding: str, context):
        self.runtime = runtime
        self.context = context
        self.exit_requested = False
        with self.building():
            check_gl_version(*opengl_requirements(runtime))
            self.binding = session_binding(binding, context)  # alive as long as the session
            self.session = xr.create_session(runtime.instance, xr.SessionCreateInfo(
                system_id=runtime.system_id, next=ctypes.cast(ctypes.pointer(self.binding), ctypes.c_void_p)))
            self.on_close(_destroy, xr.destroy_session, self.session)
            self.space = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(
                reference_space_type=xr.ReferenceSpaceType.LOCAL))
            self.on_close(_destroy, xr.destroy_space, self.space)
            colour = choose_format(list(xr.enumerate_swapchain_formats(self.session)))
            depth = xr.KHR_COMPOSITION_LAYER_DEPTH_EXTENSION_NAME in runtime.extensions
            self.swapchains = self.own(EyeSwapchains(runtime.instance, runtime.system_id, self.session, colour, depth))
            self.lifecycle = xr.utils.SessionStateManager(runtime.instance, self.session, STEREO)
        log.info("session: %s swapchains of %s", colour.name, " and ".join(f"{w}x{h}" for w, h in self.sizes))

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(width, height) of each eye, as the runtime recommends."""
        return self.swapchains.sizes

    @property
    def lost(self) -> bool:
        """The loop ended because the runtime is losing the session (reconnect to go on)."""
        return self.lifecycle.request_restart

    def frames(self) -> Iterator[Frame]:
        """Run the frame loop until the session exits or is lost.

        Yields each frame after ``xrBeginFrame`` with its views located; the caller draws,
        sets ``frame.layers`` and the loop ends the frame when the caller asks for the next, and
        also when the caller's loop breaks or raises (with no layers, if none were set).
        """
        index = 0
        while True:
            self._poll()
            if self.lifecycle.exit_render_loop:
                return
            if not self.lifecycle.session_is_running:
                time.sleep(IDLE_POLL_S)
                continue
            state = xr.wait_frame(self.session)
            started = time.monotonic()
            xr.begin_frame(self.session)
            frame = Frame(index, state, started=started)
            try:
                if state.should_render:
                    frame.views = self._locate(state.predicted_display_time)
                yield frame
            except BaseException:  # the caller's loop broke or raised: the begun frame still ends
                with contextlib.suppress(xr.XrException):
                    self._end_frame(frame)
                raise
            self._end_frame(frame)
            index += 1

    def _end_frame(self, frame: Frame) -> None:
        xr.end_frame(self.session, xr.FrameEndInfo(
            display_time=frame.state.predicted_display_time,
            environment_blend_mode=xr.EnvironmentBlendMode.OPAQUE,
            layers=frame.layers))

    def projection_layer(self, views, depth_range: tuple[float, float] | None = None) -> xr.CompositionLayerProjection:
        """A projection layer of the acquired eye images, shown as seen from ``views``' poses;
        with ``depth_range`` (near, far) and depth swapchains, with the acquired depth images."""
        if not self.swapchains.depth_eyes:
            depth_range = None
        return xr.CompositionLayerProjection(space=self.space,
                                             views=self.swapchains.projection_views(views, depth_range))

    def request_exit(self) -> None:
        """Ask the runtime to end the session; frames keep coming until it has (STOPPING)."""
        if not self.exit_requested and self.lifecycle.session_is_running:
            with contextlib.suppress(xr.SessionNotRunningError):
                xr.request_exit_session(self.session)
            self.exit_requested = True

    def _locate(self, display_time: int) -> list:
        _, views = xr.locate_views(self.session, xr.ViewLocateInfo(
            view_configuration_type=STEREO, display_time=display_time, space=self.space))
        return list(views)

    def _poll(self) -> None:
        while True:
            try:
                event = xr.poll_event(self.runtime.instance)
            except xr.EventUnavailable:
                return
            self.lifecycle.handle_xr_event(event)


def _destroy(destroy, handle) -> None:
    """Destroy an OpenXR handle, tolerating a runtime that is already gone."""
    with contextlib.suppress(xr.XrException):
        destroy(handle)
