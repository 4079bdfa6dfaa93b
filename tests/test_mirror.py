"""`vrstyle mirror` in a real window under Xvfb (started by the tests on a free display)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from edgeties import edge_ties
from vrstyle.images import read_rgb

pytestmark = pytest.mark.gl


def mirror(*args: str, display: str | None, timeout: float = 300, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(env_vars)
    if display:
        env["DISPLAY"] = display
    return subprocess.run([sys.executable, "-m", "vrstyle.cli", "mirror", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_no_display_is_one_line_and_starts_nothing():
    done = mirror("--frames", "1", display=None, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "vrstyle mirror: error: no display" in done.stderr and "DISPLAY is not set" in done.stderr


def test_too_new_a_gl_for_the_window_is_one_clear_line(xvfb, monkeypatch):
    from vrstyle.gl.context import GLError, WindowContext

    monkeypatch.setenv("DISPLAY", xvfb)
    with pytest.raises(GLError, match=r"cannot create an OpenGL 9\.9 core context") as caught:
        WindowContext(64, 64, version=(9, 9), visible=False)
    assert "\n" not in str(caught.value)


def test_no_gl_driver_is_one_line(xvfb):
    """A GL loader (glvnd) with no driver behind it: the window and the headless path say so in one line."""
    no_driver = {"__EGL_VENDOR_LIBRARY_FILENAMES": "/nonexistent/vendor.json"}
    done = mirror("--frames", "1", display=xvfb, timeout=60, **no_driver)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "vrstyle mirror: error: cannot create an OpenGL 3.3 core context" in done.stderr
    env = {**os.environ, **no_driver}
    headless = subprocess.run([sys.executable, "-c", "from vrstyle.gl.context import GLError, HeadlessContext\n"
                               "try:\n    HeadlessContext()\nexcept GLError as exc:\n    print(exc)"],
                              env=env, capture_output=True, text=True, timeout=60)
    assert headless.stdout.startswith("no EGL display for headless OpenGL") and headless.stderr == ""


def test_bad_arguments_are_one_line(tmp_path):
    for args, message in ((["--eye-size", "big"], "WIDTHxHEIGHT"), (["--frames", "0"], "at least 1"),
                          (["--source", str(tmp_path / "none.png")], "does not exist"),
                          (["--screenshot", str(tmp_path / "no" / "shot.png")], "does not exist"),
                          (["--consistency", "stereo", "--source", str(tmp_path)], "only the demo scene")):
        done = mirror(*args, display=None, timeout=60)
        assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, args


@pytest.mark.slow
def test_raw_mirror_shows_the_demo_scene(xvfb, gl_context, tiny_model, tmp_path):
    from vrstyle.gl.scene import DemoScene

    shot = tmp_path / "raw.png"
    done = mirror("--raw", "--style", tiny_model, "--threads", "1", "--frames", "2", "--screenshot", str(shot),
                  "--eye-size", "96x64", display=xvfb)
    assert done.returncode == 0, done.stderr
    image = read_rgb(shot)
    assert image.shape == (64, 192, 3) and image.std() > 20
    scene = DemoScene(64, 96)
    reference = np.concatenate(list(scene.render_stereo(0.0)), axis=1)
    scene.close()
    assert np.abs(image.astype(int) - reference).mean() < 8  # the scene moves slowly: a few frames apart


@pytest.mark.slow
@pytest.mark.data
def test_stylized_mirror_shows_the_cpu_pipelines_frame(xvfb, shared_data, tmp_path):
    """The real thing: workers started by the mirror, tiles over ZeroMQ, stitched by the shader, shown in
    a window; the window's pixels must equal the CPU pipeline's stitch of the same frame with the same
    statistics (the third frame: normalised with the smoothed statistics of the first two)."""
    import torch

    import tiles
    from vrstyle.models import StyleEngine, load_model

    torch.set_num_threads(1)
    shot, dump = tmp_path / "shot.png", tmp_path / "frame.npz"
    done = mirror("--style", "candy", "--threads", "1", "--eye-size", "128x96", "--tile", "64", "--halo", "16",
                  "--overlap", "8", "--frames", "3", "--screenshot", str(shot), "--dump", str(dump), display=xvfb)
    assert done.returncode == 0, done.stderr
    frame = np.load(dump)
    grid = tiles.TileGrid(*map(int, frame["grid"]))
    assert (grid.rows, grid.cols) == (2, 2) and len(frame["fallback"]) == 0
    assert frame["stats"].shape == (2, 1600)  # not the stream's first frame: shared statistics were used
    window = read_rgb(shot)
    assert window.shape == (96, 256, 3)
    eyes = np.stack([window[:, :128], window[:, 128:]]).astype(int)
    raw = frame["raw"].astype(int)
    assert eyes.std() > 30  # not blank
    assert np.abs(eyes - raw).mean() > 30  # not the raw scene
    assert np.abs(raw[0] - raw[1]).mean() > 2  # a stereo pair
    engine = StyleEngine(load_model("candy"))
    cpu_tiles = engine.stylize(tiles.cut(frame["raw"], grid), frame["stats"], crop=grid.halo,
                               bounds=np.tile(grid.bounds(), (len(frame["raw"]), 1)))
    assert np.array_equal(cpu_tiles, frame["tiles"])  # the workers' tiles are the in-process tiles
    cpu = tiles.stitch(cpu_tiles, grid, str(frame["ramp"]))
    assert np.abs(eyes - cpu).max() <= 1
    assert np.abs(eyes - frame["stylized"]).max() == 0  # the window shows the compositor's eyes 1:1


@pytest.mark.slow
def test_a_foveated_mirror_shows_the_periphery_upscaled_as_the_cpu_stitch_does(xvfb, tiny_model, tmp_path):
    import tiles

    shot, dump = tmp_path / "shot.png", tmp_path / "frame.npz"
    done = mirror("--style", tiny_model, "--threads", "1", "--eye-size", "320x320", "--tile", "64", "--halo", "8",
                  "--overlap", "4", "--foveation", "fixed", "--frames", "2", "--screenshot", str(shot),
                  "--dump", str(dump), display=xvfb)
    assert done.returncode == 0, done.stderr
    frame = np.load(dump)
    grid = tiles.TileGrid(*map(int, frame["grid"]))
    assert set(frame["scales"].tolist()) == {1, 2, 4} and len(frame["fallback"]) == 0
    window = read_rgb(shot).astype(int)
    eyes = np.stack([window[:, :320], window[:, 320:]])
    cpu = tiles.stitch(frame["tiles"], grid, str(frame["ramp"]), scales=frame["scales"])
    assert np.abs(eyes - cpu).max() <= 2


@pytest.mark.slow
def test_stereo_consistency_shows_the_left_eyes_strokes_in_the_right_eye(xvfb, tiny_model, tmp_path):
    """With --consistency stereo the right eye takes the left eye's stylised pixels where it sees
    the same surface, or in a thin disocclusion beside it (as the float64 reference reprojects
    and fills them), right-eye tiles wholly covered are not stylised, and everywhere else (wider
    disocclusions, the edge the left eye does not see) the right eye keeps its own
    stylisation, never raw."""
    import tiles
    from vrstyle.reproject import FILL_REACH, View, correspondence, fill_disocclusions, sample

    dump = tmp_path / "frame.npz"
    done = mirror("--style", tiny_model, "--threads", "1", "--eye-size", "320x240", "--tile", "32", "--halo", "8",
                  "--overlap", "4", "--consistency", "stereo", "--frames", "2", "--dump", str(dump), display=xvfb)
    assert done.returncode == 0, done.stderr
    assert "of the right eye reprojected from the left" in done.stderr
    frame = np.load(dump)
    grid = tiles.TileGrid(*map(int, frame["grid"]))
    left_view, right_view = (View(frame["views"][e], frame["projections"][e], frame["depth"][e]) for e in (0, 1))
    shown = frame["stylized"].astype(float)
    own = tiles.stitch(frame["tiles"], grid, str(frame["ramp"])).astype(float)  # skipped tiles: raw
    pixels, seen = correspondence(right_view, left_view)
    near_a_tie = edge_ties(pixels, FILL_REACH)  # exact ties on the eye's edge, and the pixels filled from them
    pixels, seen = fill_disocclusions(pixels, seen, right_view.depth)  # thin disocclusions: the background's strokes
    assert 0.5 < seen.mean() < 1
    skipped = frame["skipped"]
    assert len(skipped) and (skipped >= len(grid)).all()  # right-eye tiles only
    assert tiles.covered_tiles(grid, seen)[skipped - len(grid)].all()
    assert np.abs(shown[0] - own[0]).max() <= 1
    expected = np.where(seen[..., None], sample(shown[0], pixels, cubic=True), own[1])
    assert np.abs(shown[1] - expected).mean() < 0.5
    own_kept = (np.abs(shown[1] - own[1]) <= 1).all(-1)[~seen & ~near_a_tie]
    assert own_kept.mean() > 0.995  # not reprojected: its own strokes
    assert np.abs(own[1] - frame["raw"][1])[~seen].mean() > 5  # which are not the raw render


@pytest.mark.slow
def test_temporal_consistency_carries_the_previous_frames_strokes(xvfb, tmp_path):
    """With --consistency both the left eye is the fresh stylisation with the previous frame's
    strokes blended in (at --carry) where the surface is the same, as the float64 reference
    reprojects them, and the right eye takes the left's."""
    import tiles
    from vrstyle.reproject import View, correspondence, sample

    carry = 0.7  # not the default: the option reaches the pass
    dump = tmp_path / "frame.npz"
    done = mirror("--style", "candy", "--threads", "1", "--eye-size", "160x120", "--consistency", "both",  # a real
                  "--carry", str(carry), "--frames", "3", "--dump", str(dump), display=xvfb)  # style: strokes move
    assert done.returncode == 0, done.stderr
    assert "of the left eye carried over" in done.stderr and "reprojected from the left" in done.stderr
    frame = np.load(dump)
    grid = tiles.TileGrid(*map(int, frame["grid"]))
    now, before = (View(frame[f"{prefix}views"][0], frame[f"{prefix}projections"][0], frame[f"{prefix}depth"][0])
                   for prefix in ("", "previous_"))
    own = tiles.stitch(frame["tiles"], grid, str(frame["ramp"]))[0].astype(float)
    pixels, seen = correspondence(now, before)
    assert seen.mean() > 0.5
    warped = sample(frame["previous"][0], pixels, cubic=True)
    carried = np.where(seen[..., None], carry * warped + (1 - carry) * own, own)
    shown = frame["stylized"][0].astype(float)
    assert np.abs(shown - carried).mean() < 0.5
    assert np.abs(shown - own)[seen].mean() > 10 * np.abs(shown - carried)[seen].mean()


@pytest.mark.slow
def test_frames_that_miss_their_deadline_show_the_raw_tiles_never_black(xvfb, tiny_model, tmp_path):
    shot, dump = tmp_path / "shot.png", tmp_path / "frame.npz"
    done = mirror("--style", tiny_model, "--threads", "1", "--eye-size", "96x64", "--tile", "48", "--halo", "8",
                  "--overlap", "4", "--deadline", "1", "--frames", "2", "--screenshot", str(shot), "--dump", str(dump),
                  display=xvfb)
    assert done.returncode == 0, done.stderr
    frame = np.load(dump)
    assert len(frame["fallback"]) == len(frame["tiles"])  # 1 ms: no tile can make it
    window = read_rgb(shot).astype(int)
    eyes = np.stack([window[:, :96], window[:, 96:]])
    assert np.abs(eyes - frame["raw"]).max() <= 1  # filled from the input (no stylised tile yet), not black


def test_windowed_gl_owners_free_once_also_when_built_half_way(xvfb):
    """A window, the desktop mirror and the headset's mirror window: GL names counted in a process of their own."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=xvfb, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(__file__), env.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "mirror_lifecycle_app.py")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:-1] == ["ok twice: desktop mirror", "ok twice: headset mirror",
                                            "ok half-way: desktop mirror", "ok half-way: headset mirror", "ok window"]
