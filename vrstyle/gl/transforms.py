"""4x4 matrices for eyes and objects (numpy, row-major, column vectors: ``p' = M @ p``).

Poses and fields of view follow OpenXR's conventions (right-handed, -Z forward, Y up;
angles left/down negative), so a headset's ``XrPosef`` and ``XrFovf`` map straight in.
"""

from __future__ import annotations

import math

import numpy as np


def translation(x: float, y: float, z: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = (x, y, z)
    return m


def rotation(axis, angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about ``axis`` (right-handed).

    >>> np.round(rotation((0, 0, 1), math.pi / 2) @ (1, 0, 0, 1), 6).tolist()
    [0.0, 1.0, 0.0, 1.0]
    """
    x, y, z = np.asarray(axis, float) / np.linalg.norm(axis)
    c, s = math.cos(angle), math.sin(angle)
    m = np.eye(4)
    m[:3, :3] = [[c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
                 [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
                 [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)]]
    return m


def scale(x: float, y: float | None = None, z: float | None = None) -> np.ndarray:
    return np.diag([x, x if y is None else y, x if z is None else z, 1.0])


def pose_matrix(position, orientation_xyzw) -> np.ndarray:
    """Eye (or object) to world transform from a position and a unit quaternion (x, y, z, w)."""
    x, y, z, w = orientation_xyzw
    m = np.eye(4)
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    m[:3, 3] = position
    return m


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Pose (eye to world) of a viewer at ``eye`` looking at ``target``; invert it for a view matrix."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, eye
    return m


def fov_projection(angle_left: float, angle_right: float, angle_up: float, angle_down: float,
                   near: float = 0.05, far: float = 100.0) -> np.ndarray:
    """Asymmetric perspective projection from an OpenXR field of view (radians; left and down negative)."""
    left, right = math.tan(angle_left) * near, math.tan(angle_right) * near
    down, up = math.tan(angle_down) * near, math.tan(angle_up) * near
    return np.array([[2 * near / (right - left), 0, (right + left) / (right - left), 0],
                     [0, 2 * near / (up - down), (up + down) / (up - down), 0],
                     [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
                     [0, 0, -1, 0]])


def symmetric_fov(fov_y_deg: float, aspect: float) -> tuple[float, float, float, float]:
    """(left, right, up, down) angles of a symmetric frustum with vertical FOV ``fov_y_deg`` and width/height ``aspect``."""
    half_y = math.radians(fov_y_deg) / 2
    half_x = math.atan(math.tan(half_y) * aspect)
    return -half_x, half_x, half_y, -half_y


def stereo_eye_poses(head_pose: np.ndarray, ipd: float) -> np.ndarray:
    """(2, 4, 4) left and right eye poses, ``ipd / 2`` either side of the head along its x axis."""
    return np.stack([head_pose @ translation(sign * ipd / 2, 0, 0) for sign in (-1, 1)])
