"""Stereo frame sources for the mirror and the pipeline: image pairs, side-by-side images, photo folders.

Every source gives (2, H, W, 3) uint8 frames (left eye first) of one fixed eye size, fitted
inside a largest eye size so stylisation costs what the user asked for. The built-in 3D demo
scene is one too (:class:`SceneSource`), rendered by :mod:`vrstyle.gl.scene` in a GL context.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.images import read_rgb
from vrstyle.resources import Resource

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi")
STEREO_PAIR_NAMES = (("im0", "im1"), ("left", "right"))
"""Folders holding exactly such a pair (e.g. a Middlebury 2014 scene: im0.png, im1.png) are one stereo frame."""


class FrameSource(Protocol):
    """What the mirror and the pipeline read frames from."""

    name: str
    eye_shape: tuple[int, int]  # (height, width)

    def frame(self, time: float) -> np.ndarray:
        """The (2, H, W, 3) uint8 stereo frame to show at ``time`` seconds."""

    def step(self, delta: int) -> None:
        """Move ``delta`` items on (photo folders); others ignore it."""

    def close(self) -> None:
        """Free what the source holds (a decoder, GL objects); safe twice."""


def fit_shape(height: int, width: int, largest: tuple[int, int]) -> tuple[int, int]:
    """The largest (h, w) with the image's aspect ratio inside ``largest``, never upscaled.

    >>> fit_shape(1000, 3000, (720, 640))
    (213, 640)
    """
    factor = min(1.0, largest[0] / height, largest[1] / width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == shape:
        return image
    return np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.LANCZOS))


def cover(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Scale ``image`` to cover ``shape`` and crop the middle (slideshows keep one eye size)."""
    factor = max(shape[0] / image.shape[0], shape[1] / image.shape[1])
    scaled = resize(image, (max(shape[0], math.ceil(image.shape[0] * factor)), max(shape[1], math.ceil(image.shape[1] * factor))))
    top, left = (scaled.shape[0] - shape[0]) // 2, (scaled.shape[1] - shape[1]) // 2
    return scaled[top:top + shape[0], left:left + shape[1]]


class StillSource(Resource):
    """One stereo frame, always the same (an image pair, a side-by-side image, or one photo for both eyes)."""

    def __init__(self, left: np.ndarray, right: np.ndarray, name: str, largest: tuple[int, int] = settings.EYE_SIZE):
        if left.shape != right.shape:
            raise VrstyleError(f"{name}: the eyes differ in size ({left.shape[1]}x{left.shape[0]} and "
                               f"{right.shape[1]}x{right.shape[0]})")
        self.name = name
        self.eye_shape = fit_shape(left.shape[0], left.shape[1], largest)
        self.pixels = np.stack([resize(left, self.eye_shape), resize(right, self.eye_shape)])

    def frame(self, time: float) -> np.ndarray:
        return self.pixels

    def step(self, delta: int) -> None:
        pass


class PhotoFolder(Resource):
    """A slideshow of a folder's photos, each shown to both eyes, cropped to one eye size.

    Args:
        folder: the folder; its image files are shown in name order.
        largest: largest eye (height, width); the eye size fits the first photo inside it.
        seconds: how long each photo shows before the next.
    """

    def __init__(self, folder: Path, largest: tuple[int, int] = settings.EYE_SIZE,
                 seconds: float = settings.PHOTO_SECONDS):
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise VrstyleError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.name, self.seconds, self.offset = folder.name, seconds, 0
        first = read_rgb(self.paths[0])
        self.eye_shape = fit_shape(first.shape[0], first.shape[1], largest)
        self.cached: tuple[int, np.ndarray] | None = None

    def frame(self, time: float) -> np.ndarray:
        index = (int(time // self.seconds) + self.offset) % len(self.paths)
        if self.cached is None or self.cached[0] != index:
            photo = cover(read_rgb(self.paths[index]), self.eye_shape)
            self.cached = (index, np.stack([photo, photo]))
        return self.cached[1]

    def step(self, delta: int) -> None:
        self.offset += delta


class VideoSource(Resource):
    """A video, looped: side-by-side stereo (left half left eye) or one view both eyes see.

    Decoded with PyAV (the ``video`` extra); frames are taken at the video's own times, so a
    slow consumer skips frames rather than falling behind.
    """

    def __init__(self, path: Path, largest: tuple[int, int] = settings.EYE_SIZE, side_by_side: bool = False):
        try:
            import av
        except ImportError:
            raise VrstyleError(f"{path}: playing videos needs PyAV: pip install 'vrstyle[video]'") from None
        self.av, self.path, self.side_by_side, self.name = av, path, side_by_side, path.stem
        self.container = None
        with self.building():
            self._open()
            if self.current is None:
                raise VrstyleError(f"{path}: the video has no frames")
        height, width = self.current[0].shape[:2]
        self.eye_shape = fit_shape(height, width // 2 if side_by_side else width, largest)
        if self.stream.duration:
            self.duration = float(self.stream.duration * self.stream.time_base)
        else:
            self.duration = self.container.duration / av.time_base if self.container.duration else None

    def _open(self) -> None:
        try:
            self.container = self.av.open(str(self.path))
            self.frames = self.container.decode(self.container.streams.video[0])
        except (self.av.FFmpegError, IndexError) as exc:
            raise VrstyleError(f"{self.path}: not a readable video ({exc})") from None
        self.stream = self.container.streams.video[0]
        self.current, self.upcoming = self._next(), self._next()

    def _next(self) -> tuple[np.ndarray, float] | None:
        """The next decoded frame and its time, or None at the end."""
        try:
            frame = next(self.frames)
        except (StopIteration, self.av.FFmpegError):
            return None
        return frame.to_ndarray(format="rgb24"), float(frame.time or 0.0)

    def frame(self, time: float) -> np.ndarray:
        if self.duration:
            time %= self.duration
        if time < self.current[1]:  # looped round: from the start again
            self.container.close()
            self._open()
        while self.upcoming is not None and self.upcoming[1] <= time:
            self.current, self.upcoming = self.upcoming, self._next()
        pixels = self.current[0]
        if self.side_by_side:
            half = pixels.shape[1] // 2
            left, right = pixels[:, :half], pixels[:, half:2 * half]
        else:
            left = right = pixels
        return np.stack([resize(left, self.eye_shape), resize(right, self.eye_shape)])

    def step(self, delta: int) -> None:
        pass

    def _free(self) -> None:
        if self.container is not None:
            self.container.close()


class SceneSource(Resource):
    """The built-in 3D demo scene, the default viewer's eyes at each time; needs a current GL context.

    Args:
        eye_shape: (height, width) of each eye.
        ipd: interpupillary distance, metres.
        keep_depth: also keep each frame's depth and poses in :attr:`views` (for reprojection).
    """

    name = "demo scene"

    def __init__(self, eye_shape: tuple[int, int], ipd: float = settings.IPD_M, keep_depth: bool = False):
        from vrstyle.gl.scene import DemoScene

        self.eye_shape = eye_shape
        self.scene = self.own(DemoScene(*eye_shape, ipd=ipd, keep_depth=keep_depth))
        self.views: list | None = None
        """Both eyes' :class:`~vrstyle.reproject.View` of the last frame (with ``keep_depth``)."""

    def frame(self, time: float) -> np.ndarray:
        views, projections = self.scene.eye_views(time)
        self.scene.render(views, projections, time)
        if self.scene.depth_fbos:
            from vrstyle.reproject import View

            depth = self.scene.read_depth()
            self.views = [View(views[eye], projections[eye], depth[eye]) for eye in range(2)]
        return self.scene.read()

    def step(self, delta: int) -> None:
        pass


def scene_frames(eye_shape: tuple[int, int], count: int, seconds: float = 1 / 90) -> tuple[list[np.ndarray], list]:
    """``count`` stereo frames of the demo scene ``seconds`` apart, rendered headless, and each
    frame's views with depth (:class:`~vrstyle.reproject.View`).

    Raises:
        GLError: no headless OpenGL here.
    """
    from vrstyle.gl.context import HeadlessContext

    frames, views = [], []
    with HeadlessContext(), SceneSource(eye_shape, keep_depth=True) as source:
        for index in range(count):
            frames.append(source.frame(index * seconds))
            views.append(source.views)
    return frames, views


def open_source(paths: list[str], largest: tuple[int, int] = settings.EYE_SIZE, side_by_side: bool = False,
                seconds: float = settings.PHOTO_SECONDS) -> FrameSource:
    """A source from the command line's ``--source`` paths.

    * two images: a left and a right eye;
    * one image or video: side-by-side stereo with ``side_by_side``, else one view both eyes see;
    * a folder: its stereo pair (``im0``/``im1`` or ``left``/``right``), else a slideshow of its photos.

    Raises:
        VrstyleError: missing files, unreadable images, eyes of different sizes, empty folders.
    """
    if len(paths) == 2:
        left, right = (read_rgb(p) for p in paths)
        return StillSource(left, right, Path(paths[0]).stem, largest)
    if len(paths) != 1:
        raise VrstyleError(f"--source takes one image or folder, or a left and a right image; got {len(paths)} paths")
    path = Path(paths[0])
    if path.is_dir():
        for left_name, right_name in STEREO_PAIR_NAMES:
            left = [p for p in path.iterdir() if p.stem == left_name and p.suffix.lower() in IMAGE_SUFFIXES]
            right = [p for p in path.iterdir() if p.stem == right_name and p.suffix.lower() in IMAGE_SUFFIXES]
            if left and right:
                return StillSource(read_rgb(left[0]), read_rgb(right[0]), path.name, largest)
        return PhotoFolder(path, largest, seconds)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if not path.is_file():
            raise VrstyleError(f"video {path} does not exist")
        return VideoSource(path, largest, side_by_side)
    image = read_rgb(path)
    if not side_by_side:
        return StillSource(image, image, path.stem, largest)
    if image.shape[1] < 2:
        raise VrstyleError(f"{path} is too narrow to hold two eyes side by side")
    half = image.shape[1] // 2
    return StillSource(image[:, :half], image[:, half:2 * half], path.stem, largest)
