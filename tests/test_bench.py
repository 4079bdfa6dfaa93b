"""`vrstyle bench` end to end on a tiny configuration: real broker and worker processes, the
JSON complete and consistent (every tile accounted for, stages adding up to the latency), and
one-line errors for bad options. No timing assertions: speed is for the results folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TINY = ["--eye-size", "96x80", "--tile", "48", "--halo", "8", "--overlap", "4", "--frames", "3", "--warmup", "1",
        "--threads", "1"]
ROW_KEYS = {"label", "workers", "frames", "elapsed_s", "frames_per_s", "tiles_per_s", "megapixels_per_s",
            "latency_s", "stages_mean_s", "tiles", "stylised", "fallback", "fallback_tiles", "deadline_misses",
            "records"}
STAGES = {"split", "send", "queue", "inference", "transfer", "collect", "stitch"}


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "vrstyle.cli", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def run_tiny(tmp_path: Path, model: str, *extra: str) -> dict:
    done = bench(*TINY, "--style", model, "--out", str(tmp_path), "--name", "tiny", *extra)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"tiny.{suffix}").stat().st_size > 0
    assert (tmp_path / "tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((tmp_path / "tiny.json").read_text())
    assert result["command"] in (tmp_path / "tiny.md").read_text()
    assert "in process, tiles" in done.stdout and "1 worker" in done.stdout
    return result


def check_accounting(result: dict) -> None:
    """Every tile of every frame stylised or filled in, and the stages adding up to each frame's latency."""
    per_frame = result["grid"]["tiles_per_frame"]
    frames = result["config"]["frames"]
    whole, tiled = result["baselines"]
    assert whole["tiles"] == frames * result["config"]["eyes"] == whole["stylised"]
    for row in [tiled] + result["sweep"]:
        assert ROW_KEYS <= set(row)
        assert row["frames"] == len(row["records"]) == frames
        assert row["tiles"] == frames * per_frame == row["stylised"] + row["fallback_tiles"]
        assert row["tiles_per_s"] == pytest.approx(row["frames_per_s"] * per_frame)
        latency = row["latency_s"]
        assert latency["count"] == frames and latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
        for record in row["records"]:
            assert record["stylised"] + sum(record["fallback"].values()) == per_frame
            stages = record["stages_s"]
            assert set(stages) == STAGES and min(stages.values()) >= 0
            # The critical path misses only the part of `send` after the last request went out.
            assert abs(sum(stages.values()) - record["latency_s"]) <= stages["send"] + 0.02 * record["latency_s"] + 1e-3


def test_tiny_sweep_json_is_complete_and_consistent(tmp_path, tiny_model):
    result = run_tiny(tmp_path, tiny_model, "--workers", "1,2")
    environment = result["environment"]
    for key in ("platform", "cpu", "cpu_count", "python", "numpy", "torch", "pyzmq", "libzmq", "git", "devices"):
        assert key in environment
    assert environment["torch"] and environment["pyzmq"] and environment["devices"] == ["cpu"]
    config = result["config"]
    assert config["eye_shape"] == [80, 96] and config["eyes"] == 2 and config["workers"] == [1, 2]
    assert config["model"] == "tiny" and config["source"] == ["synthetic"]
    grid = result["grid"]
    assert grid["tiles_per_frame"] == 2 * grid["rows"] * grid["cols"] == 8
    assert [row["label"] for row in result["baselines"]] == ["in process, whole eyes", "in process, tiles"]
    assert [row["workers"] for row in result["sweep"]] == [1, 2]
    check_accounting(result)
    for row in result["sweep"]:
        assert row["fallback_tiles"] == 0 and row["deadline_misses"] is None  # no deadline: every tile waited for
        assert row["vs_whole_eyes"] > 0 and row["vs_in_process_tiles"] > 0 and row["scaling_efficiency"] > 0
        assert row["counters"]["frames"] == config["frames"] + config["warmup"]
    assert result["sweep"][0]["scaling_efficiency"] == pytest.approx(1.0)
    ratios = result["ratios"]
    assert ratios["tiling_cost"] > 0 and ratios["transport_cost"] > 0 and ratios["transport_cost_workers"] == 1


@pytest.mark.parametrize("data_path", ["null", "identity"])
def test_the_data_path_alone_beside_a_memcpy(tmp_path, data_path):
    """Workers without a network, the frame's memcpy as the baseline, every tile accounted for;
    identity workers return each tile's core as it was sent."""
    done = bench(*TINY, "--data-path", data_path, "--out", str(tmp_path), "--name", "tiny")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "tiny.json").read_text())
    assert result["config"]["model"] == data_path
    [memcpy] = result["baselines"]
    assert memcpy["label"].startswith("memcpy") and memcpy["frames_per_s"] > 0
    [row] = result["sweep"]
    assert row["tiles"] == row["stylised"] == 3 * result["grid"]["tiles_per_frame"]
    assert 0 < row["vs_memcpy"] == pytest.approx(row["frames_per_s"] / memcpy["frames_per_s"])
    assert "data path: 1 worker at" in done.stdout
    assert row["wire_mb_per_frame"] == {"pixel_bytes_sent": 0, "pixel_bytes_received": 0}  # the frame ring


@pytest.mark.gl
def test_stereo_consistency_leaves_out_the_tiles_the_left_eye_covers(tmp_path, gl_context):
    """The demo scene rendered headless with its depth: right-eye tiles wholly covered by the
    left eye are never requested, and every tile is still accounted for."""
    done = bench("--eye-size", "320x240", "--tile", "32", "--halo", "8", "--overlap", "4", "--data-path", "null",
                 "--source", "scene", "--consistency", "stereo", "--frames", "3", "--warmup", "0",
                 "--out", str(tmp_path), "--name", "stereo")
    assert done.returncode == 0, done.stderr
    [row] = json.loads((tmp_path / "stereo.json").read_text())["sweep"]
    assert 0 < row["skipped"] < row["tiles"] / 2 and row["stylised"] + row["skipped"] == row["tiles"]
    assert row["counters"]["skipped_tiles"] == row["skipped"]
    assert "stereo consistency: 1 worker left out" in done.stdout


def test_compressed_messages_are_counted_per_frame(tmp_path):
    """Pixels forced into messages go on the wire; JPEG sends fewer bytes than raw tiles."""
    sent = {}
    for codec in ("none", "jpeg"):
        done = bench(*TINY, "--data-path", "identity", "--payload", "zerocopy", "--codec", codec, "--out",
                     str(tmp_path), "--name", codec)
        assert done.returncode == 0, done.stderr
        [row] = json.loads((tmp_path / f"{codec}.json").read_text())["sweep"]
        sent[codec] = row["wire_mb_per_frame"]["pixel_bytes_sent"]
        assert row["wire_mb_per_frame"]["pixel_bytes_received"] > 0 and "pixels as messages" in done.stdout
    assert 0 < sent["jpeg"] < sent["none"]


def test_identity_workers_return_the_tiles_they_were_sent():
    """What the identity data path measures is real work: each tile's core and overlap come back."""
    import tiles
    from vrstyle.pipeline import FramePipeline
    from vrstyle.transport.cluster import LocalCluster

    frame = np.random.default_rng(0).integers(0, 256, (2, 80, 96, 4), dtype=np.uint8)
    with LocalCluster(["identity"], 1) as identity, identity.client() as client, \
            FramePipeline.plan(client, 80, 96, "identity", tile=48, halo=8, overlap=4, deadline_s=None) as pipe:
        result = pipe.process(frame)
    assert result.complete
    np.testing.assert_array_equal(result.tiles, tiles.crop_halo(tiles.cut(frame, result.grid), result.grid)[..., :3])


def test_a_deadline_at_a_rate_fills_late_tiles_and_counts_every_one(tmp_path, tiny_model):
    # 1 ms is far less than one forward pass here: most tiles miss it and are filled in.
    result = run_tiny(tmp_path, tiny_model, "--workers", "1", "--rate", "30", "--deadline", "1", "--mono")
    check_accounting(result)
    row = result["sweep"][0]
    assert result["grid"]["tiles_per_frame"] == 4
    assert row["fallback_tiles"] > 0 and set(row["fallback"]) <= {"late", "lost", "error"}
    assert row["deadline_misses"] == sum(bool(record["fallback"]) for record in row["records"]) > 0


def test_foveation_is_measured_beside_the_same_workers_without_it(tmp_path, tiny_model):
    done = bench("--eye-size", "320x320", "--tile", "64", "--halo", "8", "--overlap", "4", "--frames", "2",
                 "--warmup", "1", "--threads", "1", "--style", tiny_model, "--foveation", "fixed",
                 "--out", str(tmp_path), "--name", "tiny")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "tiny.json").read_text())
    plain, foveated = result["sweep"]
    assert (plain["label"], foveated["label"]) == ("1 worker", "1 worker, foveated")
    assert not plain["foveated"] and foveated["foveated"] and plain["vs_unfoveated"] is None
    assert foveated["vs_unfoveated"] == pytest.approx(foveated["megapixels_per_s"] / plain["megapixels_per_s"])
    assert foveated["tiles"] == foveated["stylised"] == 2 * result["grid"]["tiles_per_frame"]
    grid = result["grid"]
    assert grid["scales"][2][2] == 1 and grid["scales"][0][0] == 4
    assert grid["foveated_pixels_computed_per_eye_pixel"] < grid["pixels_computed_per_eye_pixel"]
    assert "foveation gain: 1 worker, foveated serves" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--eye-size", "quest9"], "unknown eye preset 'quest9'"),
    (["--workers", "0"], "worker counts must be at least 1"),
    (["--workers", "1,two"], "--workers takes counts like 1,2,4"),
    (["--style", "no_such_style"], "unknown style 'no_such_style'"),
    (["--fp16"], "--fp16 needs a CUDA device"),
    (["--source", "/nonexistent/left.png", "/nonexistent/right.png"], "nonexistent"),
    (["--rings", "0.7,0.3"], "foveation rings must be 1 or 2 increasing"),
    (["--rings", "wide"], "--rings takes radii like 0.35,0.7"),
    (["--foveation", "gaze"], "invalid choice: 'gaze'"),
    (["--consistency", "stereo"], "--consistency stereo needs both eyes' depth: --source scene"),
])
def test_bad_options_are_one_line(args, message):
    done = bench(*args, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("vrstyle bench: error:"), done.stderr


def test_an_unreachable_broker_is_one_line(tiny_model, tmp_path):
    done = bench(*TINY, "--style", tiny_model, "--broker", "tcp://127.0.0.1:9", "--out", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no answer from the broker at tcp://127.0.0.1:9" in lines[0], done.stderr
    assert not any(tmp_path.iterdir())  # nothing measured, nothing written


def test_the_workers_of_a_running_broker(tmp_path, tiny_model, cluster):
    done = bench(*TINY, "--style", tiny_model, "--broker", cluster.client_endpoint, "--out", str(tmp_path),
                 "--name", "remote")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "remote.json").read_text())
    check_accounting(result)
    (row,) = result["sweep"]
    assert row["label"] == "broker, 2 workers" and row["workers"] == 2 and row["fallback_tiles"] == 0


def test_a_tile_larger_than_the_eye_is_one_tile_as_in_stylize_and_mirror():
    from vrstyle.bench import BenchConfig, check

    grid = check(BenchConfig(eye="96x80", eye_shape=(80, 96), tile=512))
    assert (grid.rows, grid.cols, grid.height, grid.width) == (1, 1, 80, 96)


def test_sources_give_frames_of_exactly_the_eye_size(tmp_path):
    from vrstyle.bench import BenchConfig, load_frames
    from vrstyle.images import write_rgb

    rng = np.random.default_rng(0)
    pair = tmp_path / "pair"
    pair.mkdir()
    write_rgb(pair / "im0.png", rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    write_rgb(pair / "im1.png", rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    photos = tmp_path / "photos"
    photos.mkdir()
    for k, shape in enumerate([(40, 90, 3), (120, 60, 3), (64, 64, 3)]):
        write_rgb(photos / f"{k}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    for source, eyes, distinct in (([str(pair)], 2, 1), ([str(photos)], 2, 3), ([str(photos)], 1, 3),
                                   (["synthetic"], 2, 4)):
        name, frames, views = load_frames(BenchConfig(eye_shape=(80, 96), eyes=eyes, source=source), 4)
        assert len(frames) == distinct and all(f.shape == (eyes, 80, 96, 3) and f.dtype == np.uint8 for f in frames)
        assert views is None
    _, (stereo,), _ = load_frames(BenchConfig(eye_shape=(80, 96), source=[str(pair)]), 4)
    assert (stereo[0] != stereo[1]).any()  # left and right eyes stay apart
