"""`vrstyle mirror` in a real window under Xvfb (started by the tests on a free display)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from vrstyle.images import read_rgb

pytestmark = pytest.mark.gl


def mirror(*args: str, display: str | None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
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
    with pytest.raises(GLError, match=r"OpenGL 9\.9 core is needed") as caught:
        WindowContext(64, 64, version=(9, 9), visible=False)
    assert "\n" not in str(caught.value)


def test_bad_arguments_are_one_line(tmp_path):
    for args, message in ((["--eye-size", "big"], "WIDTHxHEIGHT"), (["--frames", "0"], "at least 1"),
                          (["--source", str(tmp_path / "none.png")], "does not exist"),
                          (["--screenshot", str(tmp_path / "no" / "shot.png")], "does not exist")):
        done = mirror(*args, display=None, timeout=60)
        assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, args


def test_raw_mirror_shows_the_demo_scene(xvfb, gl_context, tmp_path):
    from vrstyle.gl.scene import DemoScene

    shot = tmp_path / "raw.png"
    done = mirror("--raw", "--frames", "2", "--screenshot", str(shot), "--eye-size", "96x64", display=xvfb)
    assert done.returncode == 0, done.stderr
    image = read_rgb(shot)
    assert image.shape == (64, 192, 3) and image.std() > 20
    scene = DemoScene(64, 96)
    reference = np.concatenate(list(scene.render_stereo(0.0)), axis=1)
    scene.delete()
    assert np.abs(image.astype(int) - reference).mean() < 8  # the scene moves slowly: a few frames apart
