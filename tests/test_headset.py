"""The headset client against a real OpenXR runtime (Monado, see xrenv.py) and real workers.

The client runs as a user runs it (``python -m vrstyle.cli headset``), inside the Monado chroot
where the system has no Monado of its own, with no torch there; the style workers run on the
host (a real broker and worker processes) and are reached over tcp loopback. What the client
submitted is read back from the swapchain images (``--record``) and checked here against the
CPU pipeline: the same tiles stitched by :func:`tiles.stitch`, and those tiles recomputed from
the recorded raw eyes and statistics by an in-process engine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tiles
from vrstyle.errors import VrstyleError

HEADSET = ["-m", "vrstyle.cli", "headset"]
RUN_TIMEOUT_S = 300
"""A generous bound for a client run on a busy two-core machine (the null compositor paces 20 FPS)."""
MAX_FRAME_INTERVAL_S = 1.5
"""Longest tolerated time between two xrEndFrame calls: waiting on a dead worker would take
the broker's heartbeat timeout (3 s); the client never waits past its frame budget."""


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("vrstyle headset: error: "), stderr
    return lines[0]


def test_no_runtime_is_one_line(tmp_path):
    pytest.importorskip("xr", reason="needs pyopenxr (vrstyle[xr])")
    env = {**os.environ, "XR_RUNTIME_JSON": str(tmp_path / "nowhere.json")}
    done = subprocess.run([sys.executable, *HEADSET], env=env, capture_output=True, text=True, timeout=60)
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
    done = xrenv.run([xrenv.python, *HEADSET], env={"XDG_RUNTIME_DIR": xdg}, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "is its service running" in one_line_error(done.stderr)


@pytest.mark.xr
def test_info_reports_the_runtime_the_loader_finds(xrenv, monado):
    """`vrstyle info --json` where the headset client runs (no torch there): Monado, started, with OpenGL."""
    done = xrenv.run([xrenv.python, "-m", "vrstyle.cli", "info", "--json"], env=monado.client_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["openxr"]
    assert report["runtime"].startswith("Monado") and "does not start" not in report["runtime"], report
    assert report["opengl"] is True and report["hint"] is None, report


def test_the_headset_client_imports_no_torch():
    pytest.importorskip("xr", reason="needs pyopenxr (vrstyle[xr])")
    code = ("import sys, vrstyle.cli, vrstyle.commands.headset, vrstyle.commands.stylize, vrstyle.xr.app, "
            "vrstyle.xr.plugin, vrstyle.xr.mirror, "
            "vrstyle.pipeline, vrstyle.transport, vrstyle.gl.scene, vrstyle.gl.compositor; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def workers(tiny_model):
    """A broker and two CPU workers serving ``tiny`` on this host, clients on tcp loopback (the
    chroot shares the host's network, not its /tmp)."""
    from vrstyle.transport.cluster import LocalCluster

    cluster = LocalCluster([tiny_model], workers=2, threads=1)
    cluster.client_endpoint = f"tcp://127.0.0.1:{free_port()}"
    with cluster:
        yield cluster


class Run:
    """``vrstyle headset`` running in the OpenXR place, recording into a folder both sides see."""

    def __init__(self, xrenv, monado, broker: str, frames: int, depth: int = 2, every: int = 10, *extra: str,
                 env: dict[str, str] | None = None):
        self.xrenv = xrenv
        self.inside = xrenv.temp_dir("rec")
        self.folder = xrenv.host_path(self.inside)
        self.process = xrenv.popen(
            [xrenv.python, *HEADSET, "--broker", broker, "--style", "tiny", "--halo", "16", "--overlap", "8",
             "--frames", str(frames), "--pipeline-depth", str(depth), "--record", self.inside,
             "--record-every", str(every), *extra],
            env={**monado.client_env(), **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_for(self, done, what: str, timeout: float = RUN_TIMEOUT_S) -> None:
        """Until ``done()`` holds while the client runs."""
        until = time.monotonic() + timeout
        while not done():
            assert self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < until, f"{what} not reached in {timeout} s"
            time.sleep(0.2)

    def wait_for_frame(self, index: int) -> None:
        """Until the client has recorded frame ``index`` (or later)."""
        self.wait_for(lambda: any(int(p.stem[5:]) >= index for p in self.recordings()), f"frame {index}")

    def wait_for_complete_frame(self) -> None:
        """Until the client has recorded a frame whose tiles all came back stylised in time."""
        self.wait_for(lambda: any(_complete(p) for p in self.recordings()), "a completely stylised frame")

    def finish(self) -> dict:
        stdout, stderr = self.process.communicate(timeout=RUN_TIMEOUT_S)
        assert self.process.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        return json.loads((self.folder / "summary.json").read_text())

    def recordings(self) -> list[Path]:
        return sorted(self.folder.glob("frame*.npz"))

    def timeline(self) -> list[dict]:
        return [json.loads(line) for line in (self.folder / "timeline.jsonl").read_text().splitlines()]


def _complete(path: Path) -> bool:
    return len(np.load(path)["fallback"]) == 0


def check_recording(path: Path, engine) -> int:
    """Check one recorded frame; returns how many of its tiles were freshly stylised.

    What went to the headset is always the CPU stitch of the frame's tiles (GL within one
    step); fresh tiles are the workers' stylisation of exactly this frame's raw eyes with the
    recorded statistics, and with any of them the image is not the raw render.
    """
    record = np.load(path)
    height, width, core_h, core_w, rows, cols, halo, overlap = (int(v) for v in record["grid"])
    grid = tiles.TileGrid(height, width, core_h, core_w, rows, cols, halo, overlap)
    submitted, raw = record["submitted"].astype(int), record["raw"].astype(int)
    scales = record["scales"]
    stitched = tiles.stitch(record["tiles"], grid, str(record["ramp"]), scales=scales)
    assert np.abs(submitted - stitched).max() <= (1 if (scales == 1).all() else 2), path  # GL bilinear: 2 steps
    fresh = np.setdiff1d(np.arange(len(record["tiles"])), record["fallback"])
    if len(fresh):
        assert np.abs(submitted - raw).mean() > 10, path
    if len(fresh) and record["stats"].size:
        for scale in np.unique(scales[fresh]).tolist():  # each scale from the eyes downscaled by it
            level, chosen = tiles.level_grid(grid, scale), fresh[scales[fresh] == scale]
            bounds = np.tile(level.bounds(), (len(record["raw"]), 1))[chosen]
            cut = tiles.cut(tiles.downscale(record["raw"], scale), level)[chosen]
            again = engine.stylize(cut, record["stats"], crop=level.halo, bounds=bounds)
            height, width = level.out_shape
            assert np.abs(again.astype(int) - record["tiles"][chosen, :height, :width]).max() <= 1, path
    return len(fresh)


def check_poses(timeline: list[dict]) -> None:
    """Each layer carries the poses located for the frame whose image it shows, not the current ones."""
    located = {entry["submitted"]: entry["located"] for entry in timeline}
    lagging = 0
    for entry in timeline:
        if entry["shown"] is None:  # the pipeline was filling: the raw current frame
            assert entry["poses"] == entry["located"]
            continue
        assert np.allclose(entry["poses"], located[entry["shown"]]), entry
        lagging += not np.allclose(entry["poses"], entry["located"])
    assert lagging, "the simulated headset moves, so shown poses must differ from current ones"


@pytest.mark.xr
@pytest.mark.slow
def test_headset_stylizes_through_workers_on_time(xrenv, monado, workers, tiny_engine):
    run = Run(xrenv, monado, workers.client_endpoint, frames=60, depth=3, every=5)
    summary = run.finish()
    assert summary["frames"] >= 60 and summary["layers"] >= 55
    assert summary["eye_size"][0] > 0 and summary["swapchain_format"]
    assert summary["max_frame_interval_s"] < MAX_FRAME_INTERVAL_S
    assert summary["fresh_tiles"] > 0
    assert summary["frames_in_place"] >= 55  # read back straight into the frame ring: not copied to submit
    recordings = run.recordings()
    assert len(recordings) >= 8
    assert sum(check_recording(path, tiny_engine) for path in recordings) > 0
    check_poses(run.timeline())


@pytest.mark.xr
@pytest.mark.slow
def test_gaze_foveation_without_eye_tracking_is_fixed_on_each_eyes_optical_centre(xrenv, monado, workers,
                                                                                   tiny_engine):
    """Monado's simulated headset tracks no eyes: one log line, then rings on the optical centres,
    the periphery upscaled by the compositor as the CPU stitch does."""
    run = Run(xrenv, monado, workers.client_endpoint, 40, 2, 5, "--foveation", "gaze", "--tile", "128")
    stdout, stderr = run.process.communicate(timeout=RUN_TIMEOUT_S)
    assert run.process.returncode == 0 and "Traceback" not in stderr, stderr
    assert stderr.count("foveation:") == 1 and "optical centre" in stderr, stderr
    recordings = run.recordings()
    assert sum(check_recording(path, tiny_engine) for path in recordings) > 0
    scales = np.load(recordings[-1])["scales"]
    assert (scales == 1).any() and (scales > 1).any()


@pytest.mark.xr
@pytest.mark.slow
def test_stereo_consistency_puts_the_left_eyes_strokes_into_the_right_eye(xrenv, monado, workers):
    """With the scene's depth, each submitted right eye shows the left eye's stylised pixels where
    it sees the same surface or a thin disocclusion beside it (as the float64 reference reprojects
    and fills them) and its own stitched tiles elsewhere; the right eye's tiles those strokes
    cover were never stylised, and none of them shows anywhere else; the left eye is its own
    stitch; the depth goes to the runtime too."""
    from vrstyle.reproject import FILL_REACH, View, correspondence, fill_disocclusions, sample

    run = Run(xrenv, monado, workers.client_endpoint, 30, 2, 5, "--consistency", "stereo", "--tile", "64")
    summary = run.finish()
    assert summary["depth_layers"] >= 25 and summary["reprojected"] > 0.5  # depth went to the runtime too
    checked = skipped_tiles = 0
    for path in run.recordings():
        record = np.load(path)
        if "depth" not in record:  # the pipeline was filling: the raw render went out
            continue
        grid = tiles.TileGrid(*(int(v) for v in record["grid"]))
        stitched = tiles.stitch(record["tiles"], grid, str(record["ramp"])).astype(float)
        submitted = record["submitted"].astype(float)
        assert np.abs(submitted[0] - stitched[0]).max() <= 1, path
        left, right = (View(record["views"][e], record["projections"][e], record["depth"][e]) for e in (0, 1))
        pixels, seen = correspondence(right, left)
        pixels, filled = fill_disocclusions(pixels, seen, right.depth, FILL_REACH)
        assert seen.mean() > 0.5, path
        skipped = record["skipped"] - len(grid)
        assert (skipped >= 0).all(), path  # right-eye tiles only
        assert tiles.covered_tiles(grid, filled)[skipped].all(), path  # no tile left out shows anywhere
        skipped_tiles += len(skipped)
        expected = np.where(filled[..., None], sample(submitted[0], pixels, cubic=True), stitched[1])
        assert np.abs(submitted[1] - expected).mean() < 1, path
        off = np.abs(stitched[1] - expected)[seen].mean()  # the tiny model's eyes nearly agree anyway
        assert np.abs(submitted[1] - expected)[seen].mean() < off / 3, path
        checked += 1
    assert checked and skipped_tiles


@pytest.mark.xr
@pytest.mark.slow
def test_temporal_consistency_carries_the_previous_shown_frames_strokes(xrenv, monado, workers):
    """With --consistency both, each submitted left eye is its own stitch with the previous shown
    frame's submitted left eye blended in (at --carry) where the surface is the same, as the float64
    reference reprojects it: on an sRGB swapchain, sampled and blended in linear light, as GL does."""
    from vrstyle.reproject import View, correspondence, sample
    from vrstyle.xr.textures import linear_to_srgb, srgb_to_linear

    carry = 0.7  # not the default: the option reaches the pass
    run = Run(xrenv, monado, workers.client_endpoint, 30, 2, 1, "--consistency", "both", "--carry", str(carry))
    stdout, stderr = run.process.communicate(timeout=RUN_TIMEOUT_S)
    assert run.process.returncode == 0 and "Traceback" not in stderr, stderr
    assert "of the left eye carried over" in stdout + stderr
    srgb = "SRGB" in json.loads((run.folder / "summary.json").read_text())["swapchain_format"]
    records = [np.load(path) for path in run.recordings()]
    checked = 0
    for before, now in zip(records, records[1:]):
        if "depth" not in before or "depth" not in now or int(now["frame_id"]) != int(before["frame_id"]) + 1:
            continue
        grid = tiles.TileGrid(*(int(v) for v in now["grid"]))
        own = tiles.stitch(now["tiles"], grid, str(now["ramp"]))[0].astype(float)
        then, here = (View(r["views"][0], r["projections"][0], r["depth"][0]) for r in (before, now))
        pixels, seen = correspondence(here, then)
        if srgb:
            warped = sample(srgb_to_linear(before["submitted"][0]), pixels, cubic=True)
            fresh = srgb_to_linear(np.clip(np.rint(own), 0, 255).astype(np.uint8))
            blended = linear_to_srgb(carry * warped + (1 - carry) * fresh)
        else:
            blended = carry * sample(before["submitted"][0], pixels, cubic=True) + (1 - carry) * own
        expected = np.where(seen[..., None], blended, own)
        submitted = now["submitted"][0].astype(float)
        assert np.abs(submitted - expected).mean() < 1
        off = np.abs(own - expected)[seen].mean()  # the tiny model's frames nearly agree anyway
        assert np.abs(submitted - expected)[seen].mean() < off / 1.5
        checked += 1
    assert checked


@pytest.mark.xr
@pytest.mark.slow
def test_a_killed_worker_does_not_stop_the_frames(xrenv, monado, workers, tiny_engine):
    run = Run(xrenv, monado, workers.client_endpoint, 60, 3, 5)
    try:
        run.wait_for_complete_frame()  # every tile stylised once: fallbacks are stylised from here on
        workers.kill_worker(0)
        killed_at = max(int(p.stem[5:]) for p in run.recordings())
        summary = run.finish()
    finally:
        workers.start_worker(0)
    assert summary["frames"] >= 60 and summary["losses"] == 0
    assert summary["max_frame_interval_s"] < MAX_FRAME_INTERVAL_S
    after = [p for p in run.recordings() if int(p.stem[5:]) > killed_at]
    assert after
    for path in after:  # still the stitch of stylised tiles: fresh ones, or the previous stylised ones
        check_recording(path, tiny_engine)
        record = np.load(path)
        assert np.abs(record["submitted"].astype(int) - record["raw"]).mean() > 10, path


@pytest.mark.xr
@pytest.mark.slow
def test_a_lost_runtime_is_reconnected_and_frames_go_on(xrenv, workers):
    import xrenv as places

    service = places.Monado(xrenv).start()
    try:
        run = Run(xrenv, service, workers.client_endpoint, 60, 2, 5, "--reconnect-timeout", "60")
        run.wait_for_frame(15)
        service.stop()  # the runtime goes away mid-session
        time.sleep(1.0)
        service.start()
        summary = run.finish()
    finally:
        service.remove()
    assert summary["losses"] == 1 and summary["sessions"] == 2
    assert summary["frames"] >= 60


@pytest.mark.xr
@pytest.mark.slow
def test_glx_binding_with_a_mirror_window(xrenv, monado, workers):
    display = xrenv.xvfb()
    if display is None:
        pytest.skip("needs Xvfb where the client runs")
    run = Run(xrenv, monado, workers.client_endpoint, 30, 1, 10, "--graphics", "glx", "--mirror",
              env={"DISPLAY": display})
    summary = run.finish()
    assert summary["frames"] >= 30 and summary["layers"] >= 25


@pytest.mark.xr
@pytest.mark.slow
def test_plugin_api_stylizes_an_existing_pyopenxr_app(xrenv, monado, workers):
    folder = xrenv.temp_dir("app")
    app = f"{xrenv.source}/tests/xr_plugin_app.py"
    done = xrenv.run([xrenv.python, app, workers.client_endpoint, "tiny", "40", folder, "3"],
                     env=monado.client_env(), timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    host = xrenv.host_path(folder)
    timeline = json.loads((host / "timeline.json").read_text())
    assert len(timeline) == 40 and timeline[-1]["in_place"] >= 35  # textures read straight into the frame ring
    check_poses(timeline)
    recordings = sorted(host.glob("frame*.npz"))
    grid = tiles.plan_grid_for_workers(*np.load(recordings[0])["raw"].shape[1:3], 2, 16, 8)
    stylized = 0
    for path in recordings:  # read back from a linear (RGBA16F) swapchain
        record = np.load(path)
        submitted = record["submitted"].astype(int)
        assert np.abs(submitted - tiles.stitch(record["tiles"], grid)).max() <= 1, path
        if len(record["fallback"]) < len(record["tiles"]):
            assert np.abs(submitted - record["raw"].astype(int)).mean() > 10, path
            stylized += 1
    assert stylized


@pytest.mark.xr
@pytest.mark.slow
def test_openxr_owners_free_once_and_frames_always_end(xrenv, monado):
    """Break and raise out of the frame loop, a session failing half-way, every owner closed twice."""
    done = xrenv.run([xrenv.python, f"{xrenv.source}/tests/xr_lifecycle_app.py"], env=monado.client_env(),
                     timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if line.startswith("ok ")] == \
        ["ok break", "ok raise", "ok half-way", "ok twice"], done.stdout + done.stderr


def test_rings_centre_on_each_eyes_optical_axis_or_the_gaze_point():
    """Asymmetric fields of view put the optical centre off the image's middle (nasal side
    narrower); a gaze to the right moves both eyes' centres right."""
    pytest.importorskip("xr", reason="needs pyopenxr (vrstyle[xr])")
    from types import SimpleNamespace

    from vrstyle.xr.gaze import eye_centres, rotate

    pose = SimpleNamespace(orientation=SimpleNamespace(x=0.0, y=0.0, z=0.0, w=1.0))
    left = SimpleNamespace(pose=pose, fov=SimpleNamespace(angle_left=-0.9, angle_right=0.7, angle_up=0.8,
                                                          angle_down=-0.8))
    right = SimpleNamespace(pose=pose, fov=SimpleNamespace(angle_left=-0.7, angle_right=0.9, angle_up=0.8,
                                                           angle_down=-0.8))
    centres = eye_centres([left, right], (200, 300))
    assert centres[0, 1] > 150 > centres[1, 1] and np.allclose(centres[:, 0], 100)
    turn = np.sin(-0.2 / 2), np.cos(-0.2 / 2)  # 0.2 rad to the right, about y
    gaze = rotate((0.0, turn[0], 0.0, turn[1]), np.array([0.0, 0.0, -1.0]))
    assert (eye_centres([left, right], (200, 300), gaze)[:, 1] > centres[:, 1] + 10).all()


def test_plugin_refuses_an_unknown_consistency_and_depth_maps_not_of_the_eyes(tiny_engine):
    pytest.importorskip("xr", reason="needs pyopenxr (vrstyle[xr])")
    from types import SimpleNamespace

    from vrstyle.errors import VrstyleError
    from vrstyle.pipeline import FramePipeline
    from vrstyle.xr.plugin import Stylizer

    pipeline = FramePipeline(tiny_engine, tiles.plan_grid(32, 48, tile=48, halo=8, overlap=0), "tiny")
    with pytest.raises(VrstyleError, match="consistency must be one of off, stereo, temporal, both"):
        Stylizer(pipeline, consistency="sideways")
    for carry in (0.0, 1.5, float("nan")):
        with pytest.raises(VrstyleError, match=r"carried share must be in \(0, 1\]"):
            Stylizer(pipeline, consistency="temporal", carry=carry)
    stylizer = Stylizer(pipeline, depth=0, consistency="stereo")
    state = SimpleNamespace(predicted_display_period=11_000_000)
    eyes = np.zeros((2, 32, 48, 3), np.uint8)
    with pytest.raises(VrstyleError, match=r"depth maps are \(2, 32, 40\), the eyes \(2, 32, 48\)"):
        stylizer.process(state, eyes, [], [0, 0], depth=np.zeros((2, 32, 40), np.float32))
