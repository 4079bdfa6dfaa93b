"""Live defaults: the CPU cost model, its cache, and `vrstyle mirror` choosing its eye size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vrstyle import live, settings
from vrstyle.images import read_rgb
from vrstyle.models.registry import resolve_model


def test_the_chosen_eye_is_the_largest_predicted_fast_enough():
    cost = live.CpuCost(fixed=0.01, per_pixel=2e-6)
    chosen = live.choose_eye(cost)
    ladder = live.eye_ladder()
    assert cost.fps(chosen) >= live.LIVE_FPS
    assert cost.fps(ladder[ladder.index(chosen) + 1]) < live.LIVE_FPS
    assert all(h % settings.ALIGN == 0 and w % settings.ALIGN == 0 for h, w in ladder)
    assert live.choose_eye(live.CpuCost(1.0, 1e-3)) == ladder[0]  # too slow for any: the smallest
    assert live.choose_eye(live.CpuCost(0.0, 1e-9)) == settings.EYE_SIZE  # fast: the default eye


def test_the_cpu_is_timed_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    calls = []

    def timed(model):
        calls.append(model)
        return live.CpuCost(0.02, 1e-6)

    monkeypatch.setattr(live, "measure_cpu_cost", timed)
    assert live.cpu_cost("candy", tmp_path) == live.CpuCost(0.02, 1e-6)
    assert live.cpu_cost("candy", tmp_path) == live.CpuCost(0.02, 1e-6)
    assert len(calls) == 1
    cache = tmp_path / live.CACHE_FILE
    entries = json.loads(cache.read_text())
    assert list(entries) == [live.cache_key("candy/binary", resolve_model("candy").path)]
    cache.write_text(json.dumps({key: {"fixed": "x"} for key in entries}))  # damaged: timed again
    assert live.cpu_cost("candy", tmp_path) == live.CpuCost(0.02, 1e-6) and len(calls) == 2
    cache.write_text("not json")
    assert live.cpu_cost("candy", tmp_path) == live.CpuCost(0.02, 1e-6) and len(calls) == 3


def test_an_unwritable_cache_still_gives_a_plan(tmp_path, monkeypatch):
    monkeypatch.setattr(live, "measure_cpu_cost", lambda model: live.CpuCost(0.02, 1e-6))
    blocker = tmp_path / "file"
    blocker.write_text("")
    plan = live.plan_live("candy", blocker / "cache")  # a folder under a file cannot be made
    assert plan.devices == ["cpu"] and plan.whole_eyes and plan.eye_shape == (288, 256)
    assert plan.reason.startswith("CPU only: 256x288 eyes") and "--eye-size" in plan.reason


def test_the_real_measurement_fits_a_positive_cost():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    cost = live.measure_cpu_cost(resolve_model("candy").load())
    assert cost.per_pixel > 0 and cost.fixed >= 0
    assert 0.1 < cost.fps((720, 640)) < 1000


@pytest.mark.gl
@pytest.mark.slow
def test_the_mirror_says_what_it_chose_and_obeys_a_given_size(xvfb, tmp_path):
    cache = tmp_path / "vrstyle"
    cache.mkdir()
    slow = {"fixed": 1.0, "per_pixel": 1e-3}  # slower than any size: the smallest eye of the ladder
    (cache / live.CACHE_FILE).write_text(json.dumps({live.cache_key("candy/binary", resolve_model("candy").path): slow}))
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY",)}
    env.update(DISPLAY=xvfb, XDG_CACHE_HOME=str(tmp_path))
    shot = tmp_path / "shot.png"

    def mirror(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vrstyle.cli", "mirror", "--style", "candy", "--frames", "2",
                               "--screenshot", str(shot), *args], env=env, capture_output=True, text=True, timeout=300)

    done = mirror()
    assert done.returncode == 0, done.stderr
    height, width = live.eye_ladder()[0]
    lines = [line for line in done.stderr.splitlines() if line.startswith("vrstyle mirror: ")]
    fps = live.CpuCost(**slow).fps((height, width))
    assert lines[0] == (f"vrstyle mirror: CPU only: {width}x{height} eyes, whole, for about {fps:.2g} stylised fps "
                        "with candy; --eye-size to change"), done.stderr
    assert lines[1].startswith("vrstyle mirror: showed 2 stylised frames")
    assert read_rgb(shot).shape == (height, 2 * width, 3)
    done = mirror("--eye-size", "96x64")
    assert done.returncode == 0 and "CPU only" not in done.stderr, done.stderr
    assert read_rgb(shot).shape == (64, 192, 3)


def test_local_workers_go_on_every_gpu_else_on_the_cpu():
    torch = pytest.importorskip("torch")
    expected = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else ["cpu"]
    assert live.local_devices() == expected
