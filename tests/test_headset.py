"""The headset client against a real OpenXR runtime (Monado in the chroot, see xrroot.py).

The client runs inside the chroot exactly as a user runs it (``python -m vrstyle.cli
headset``), with no torch there; style workers run on the host and are reached over tcp
loopback. What the client submitted is read back from the swapchain images (``--record``)
and checked here against the CPU pipeline.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vrstyle.errors import VrstyleError

HEADSET = ["-m", "vrstyle.cli", "headset"]


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("vrstyle headset: error: "), stderr
    return lines[0]


def test_no_runtime_is_one_line(tmp_path):
    pytest.importorskip("xr", reason="needs pyopenxr (vrstyle[xr])")
    env = {**os.environ, "XR_RUNTIME_JSON": str(tmp_path / "nowhere.json")}
    done = subprocess.run([sys.executable, "-m", "vrstyle.cli", "headset"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "XR_RUNTIME_JSON" in one_line_error(done.stderr)


def test_runtime_without_opengl_is_refused():
    pytest.importorskip("xr", reason="needs pyopenxr (vrstyle[xr])")
    from vrstyle.xr.runtime import choose_binding

    with pytest.raises(VrstyleError, match="does not support OpenGL.*XR_KHR_vulkan_enable2"):
        choose_binding(["XR_KHR_vulkan_enable2", "XR_MNDX_egl_enable"], platform="linux")
    with pytest.raises(VrstyleError, match="no EGL binding"):
        choose_binding(["XR_KHR_opengl_enable"], "egl", platform="linux")
    assert choose_binding(["XR_KHR_opengl_enable", "XR_MNDX_egl_enable"], platform="win32") == "wgl"


@pytest.mark.xr
def test_runtime_service_not_running_is_one_line(xrenv):
    xdg = xrenv.temp_dir("vn")  # a runtime directory no service listens in
    done = xrenv.run([xrenv.python, *HEADSET], env={"XDG_RUNTIME_DIR": xdg, "EGL_PLATFORM": "surfaceless"}, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "is its service running" in one_line_error(done.stderr)
