"""Where each eye looks, in its image's pixels: the optical centre, or the gaze point.

Foveation centres its rings on these points. Without eye tracking the centre is where the
view's optical axis meets the image: not the middle, since headset views have asymmetric
fields of view (the nasal side is narrower). With ``XR_EXT_eye_gaze_interaction`` the gaze
ray, located each frame in the session's space, is projected into each eye's image instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging

import numpy as np
import xr

from vrstyle.resources import Resource

log = logging.getLogger(__name__)

GAZE_EXTENSION = xr.EXT_EYE_GAZE_INTERACTION_EXTENSION_NAME
GAZE_PROFILE = "/interaction_profiles/ext/eye_gaze_interaction"
GAZE_POSE = "/user/eyes_ext/input/gaze_ext/pose"
FORWARD = np.array([0.0, 0.0, -1.0])
"""The OpenXR view's optical axis, in the view's own frame."""


def rotate(quaternion, vector: np.ndarray) -> np.ndarray:
    """``vector`` rotated by an OpenXR (x, y, z, w) unit quaternion.

    >>> rotate((0.0, 0.7071068, 0.0, 0.7071068), np.array([0.0, 0.0, -1.0])).round(6).tolist()
    [-1.0, 0.0, 0.0]
    """
    x, y, z, w = _xyzw(quaternion)
    axis = np.array([x, y, z])
    return vector + 2.0 * np.cross(axis, np.cross(axis, vector) + w * vector)


def image_point(view, direction: np.ndarray, eye_shape: tuple[int, int]) -> tuple[float, float]:
    """(y, x) pixels where a ray ``direction`` (in the views' space) meets the view's image.

    A ray at or behind the view's image plane lands far outside on its side, so the rings
    still form away from it.

    >>> class Fov: angle_left, angle_right, angle_up, angle_down = -0.8, 0.6, 0.7, -0.7
    >>> class Pose: orientation = (0.0, 0.0, 0.0, 1.0)
    >>> class View: fov, pose = Fov, Pose
    >>> [round(v) for v in image_point(View, FORWARD, (100, 200))]
    [50, 120]
    """
    x, y, z, w = _xyzw(view.pose.orientation)
    local = rotate((-x, -y, -z, w), np.asarray(direction, dtype=np.float64))
    depth = max(-local[2], 1e-6)
    fov = view.fov
    left, right = np.tan(fov.angle_left), np.tan(fov.angle_right)
    up, down = np.tan(fov.angle_up), np.tan(fov.angle_down)
    height, width = eye_shape
    x = width * (local[0] / depth - left) / (right - left)
    y = height * (up - local[1] / depth) / (up - down)
    return float(np.clip(y, -4 * height, 5 * height)), float(np.clip(x, -4 * width, 5 * width))


def eye_centres(views, eye_shape: tuple[int, int], gaze: np.ndarray | None = None) -> np.ndarray:
    """(eyes, 2) (y, x) pixels of each eye's rings: the gaze point, else the optical centre."""
    centres = []
    for view in views:
        direction = rotate(_xyzw(view.pose.orientation), FORWARD) if gaze is None else gaze
        centres.append(image_point(view, direction, eye_shape))
    return np.array(centres)


class GazeTracker(Resource):
    """The gaze pose of ``XR_EXT_eye_gaze_interaction``, located each frame.

    Build it with :func:`open_gaze`, which returns None (and says why in one log line) where
    the runtime or the headset has no eye tracking.
    """

    def __init__(self, instance, session, space):
        self.session, self.space = session, space
        with self.building():
            self.action_set = xr.create_action_set(instance, xr.ActionSetCreateInfo(
                action_set_name="vrstyle_gaze", localized_action_set_name="vrstyle gaze", priority=0))
            self.on_close(_destroy, xr.destroy_action_set, self.action_set)
            self.action = xr.create_action(self.action_set, xr.ActionCreateInfo(
                action_type=xr.ActionType.POSE_INPUT, action_name="gaze", localized_action_name="gaze"))
            xr.suggest_interaction_profile_bindings(instance, xr.InteractionProfileSuggestedBinding(
                interaction_profile=xr.string_to_path(instance, GAZE_PROFILE),
                suggested_bindings=[xr.ActionSuggestedBinding(self.action, xr.string_to_path(instance, GAZE_POSE))]))
            xr.attach_session_action_sets(session, xr.SessionActionSetsAttachInfo(action_sets=[self.action_set]))
            self.gaze_space = xr.create_action_space(session, xr.ActionSpaceCreateInfo(
                action=self.action, pose_in_action_space=xr.Posef()))
            self.on_close(_destroy, xr.destroy_space, self.gaze_space)

    def direction(self, display_time: int) -> np.ndarray | None:
        """The gaze direction in the session's space at ``display_time``, or None while untracked."""
        try:
            xr.sync_actions(self.session, xr.ActionsSyncInfo(
                active_action_sets=[xr.ActiveActionSet(self.action_set, xr.NULL_PATH)]))
            location = xr.locate_space(self.gaze_space, self.space, display_time)
        except (xr.SessionLostError, xr.InstanceLostError):
            raise  # the runtime is going: the frame loop reconnects
        except xr.XrException as exc:  # e.g. not focused: this frame is centred, the next may track
            log.debug("gaze not located: %s", exc)
            return None
        if not location.location_flags & xr.SpaceLocationFlags.ORIENTATION_VALID_BIT:
            return None
        return rotate(_xyzw(location.pose.orientation), FORWARD)


def open_gaze(runtime, session, space) -> GazeTracker | None:
    """Eye gaze for foveation, or None with one log line saying why foveation stays fixed."""
    if GAZE_EXTENSION not in runtime.extensions:
        log.warning("foveation: the OpenXR runtime offers no eye tracking (%s); rings stay on each eye's "
                    "optical centre", GAZE_EXTENSION)
        return None
    properties = xr.SystemEyeGazeInteractionPropertiesEXT()
    system = xr.SystemProperties(next=ctypes.cast(ctypes.pointer(properties), ctypes.c_void_p))
    result = xr.raw_functions.xrGetSystemProperties(runtime.instance, runtime.system_id, ctypes.byref(system))
    if result < 0 or not properties.supports_eye_gaze_interaction:
        log.warning("foveation: this headset (%s) has no eye tracking; rings stay on each eye's optical centre",
                    runtime.system_name)
        return None
    try:
        return GazeTracker(runtime.instance, session, space)
    except xr.XrException as exc:
        log.warning("foveation: eye tracking could not start (%s); rings stay on each eye's optical centre", exc)
        return None


def _xyzw(orientation) -> tuple[float, float, float, float]:
    """An ``xr.Quaternionf`` (or an (x, y, z, w) sequence) as a tuple."""
    if hasattr(orientation, "w"):
        return orientation.x, orientation.y, orientation.z, orientation.w
    return tuple(float(v) for v in orientation)


def _destroy(destroy, handle) -> None:
    with contextlib.suppress(xr.XrException):
        destroy(handle)
