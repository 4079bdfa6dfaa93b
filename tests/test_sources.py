"""Stereo frame sources: pairs, side-by-side images, folders, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from vrstyle.errors import VrstyleError
from vrstyle.images import write_rgb
from vrstyle.sources import PhotoFolder, open_source


def gradient(height: int, width: int, offset: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x + offset) % 256, y % 256, np.full_like(x, 128)], -1).astype(np.uint8)


def test_image_pair_is_left_and_right(tmp_path):
    write_rgb(tmp_path / "l.png", gradient(60, 80))
    write_rgb(tmp_path / "r.png", gradient(60, 80, 5))
    frame = open_source([str(tmp_path / "l.png"), str(tmp_path / "r.png")]).frame(0.0)
    assert frame.shape == (2, 60, 80, 3)
    assert np.array_equal(frame[0], gradient(60, 80)) and np.array_equal(frame[1], gradient(60, 80, 5))


def test_side_by_side_image_is_split_and_large_images_fit_the_eye_size(tmp_path):
    both = np.concatenate([gradient(400, 300), gradient(400, 300, 7)], axis=1)
    write_rgb(tmp_path / "sbs.png", both)
    source = open_source([str(tmp_path / "sbs.png")], largest=(200, 200), side_by_side=True)
    assert source.eye_shape == (200, 150)
    frame = source.frame(1.0)
    assert frame.shape == (2, 200, 150, 3) and not np.array_equal(frame[0], frame[1])
    mono = open_source([str(tmp_path / "sbs.png")], largest=(200, 200))
    assert mono.eye_shape == (133, 200) and np.array_equal(mono.frame(0)[0], mono.frame(0)[1])


def test_folder_with_a_stereo_pair(shared_data):
    scene = shared_data / "stereo" / "middlebury2014" / "Adirondack"
    source = open_source([str(scene)], largest=(240, 320))
    frame = source.frame(0.0)
    assert frame.shape[:2] == (2, source.eye_shape[0]) and max(source.eye_shape) <= 320
    assert np.abs(frame[0].astype(int) - frame[1]).mean() > 3  # two viewpoints, not one photo twice


def test_photo_folder_is_a_slideshow_with_one_eye_size(tmp_path):
    write_rgb(tmp_path / "a.png", gradient(100, 100))
    write_rgb(tmp_path / "b.jpg", gradient(300, 120, 50))
    (tmp_path / "notes.txt").write_text("not a photo")
    source = PhotoFolder(tmp_path, largest=(64, 64), seconds=2.0)
    first, second = source.frame(0.5), source.frame(2.5)
    assert first.shape == second.shape == (2, 64, 64, 3) and not np.array_equal(first, second)
    source.step(1)
    assert np.array_equal(source.frame(0.5), second)


@pytest.mark.parametrize("make, paths, message", [
    (lambda d: None, ["missing.png"], "does not exist"),
    (lambda d: (d / "bad.png").write_text("no"), ["bad.png"], "not a readable image"),
    (lambda d: (d / "empty").mkdir(), ["empty"], "holds no images"),
    (lambda d: (write_rgb(d / "l.png", gradient(10, 10)), write_rgb(d / "r.png", gradient(10, 12))),
     ["l.png", "r.png"], "eyes differ in size"),
    (lambda d: None, ["a", "b", "c"], "takes one image or folder"),
])
def test_bad_sources_are_one_line_errors(tmp_path, make, paths, message):
    make(tmp_path)
    with pytest.raises(VrstyleError, match=message):
        open_source([str(tmp_path / p) for p in paths])


def write_video(path, frames: np.ndarray, fps: int) -> None:
    av = pytest.importorskip("av", reason="video sources need PyAV (the video extra)")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qscale": "1"}
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_side_by_side_video_plays_by_time_and_loops(tmp_path):
    # 8 frames at 4 fps; frame k: left half grey level 20 k, right half 250 - 20 k
    frames = np.zeros((8, 48, 96, 3), np.uint8)
    for k in range(8):
        frames[k, :, :48], frames[k, :, 48:] = 20 * k + 30, 220 - 20 * k
    write_video(tmp_path / "sbs.mp4", frames, fps=4)
    source = open_source([str(tmp_path / "sbs.mp4")], side_by_side=True)
    assert source.eye_shape == (48, 48)
    for time, k in ((0.0, 0), (0.3, 1), (1.1, 4), (1.9, 7), (2.0 + 0.6, 2)):  # 2 s long: 2.6 s is frame 2 again
        left, right = source.frame(time).astype(int)
        assert abs(left.mean() - (20 * k + 30)) < 4 and abs(right.mean() - (220 - 20 * k)) < 4, (time, k)


def test_unreadable_video_is_one_line_error(tmp_path):
    pytest.importorskip("av", reason="video sources need PyAV (the video extra)")
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(VrstyleError, match="not a readable video"):
        open_source([str(tmp_path / "broken.mp4")])
