"""The transport commands: stylize through a broker, keys, workers, and one clear line for bad input."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from vrstyle import settings
from vrstyle.cli import EXIT_USER_ERROR, main


@pytest.fixture
def image(tmp_path) -> str:
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 130, 3), dtype=np.uint8)).save(path)
    return str(path)


def run(argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of the command, argparse's own exits included."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def test_stylize_through_the_broker_is_bit_identical_to_in_process(cluster, tiny_model, image, tmp_path, capsys):
    geometry = ["--tile", "48", "--halo", "12", "--overlap", "4"]
    code, err = run(["stylize", image, str(tmp_path / "local.png"), "--style", tiny_model, *geometry], capsys)
    assert code == 0, err
    code, err = run(["stylize", image, str(tmp_path / "remote.png"), "--style", tiny_model, *geometry,
                     "--broker", cluster.client_endpoint], capsys)
    assert code == 0, err
    local, remote = (np.asarray(Image.open(tmp_path / name)) for name in ("local.png", "remote.png"))
    np.testing.assert_array_equal(local, remote)
    assert np.abs(local.astype(int) - np.asarray(Image.open(image)).astype(int)).mean() > 5


def test_keys_makes_pairs_once_and_authorises_peers(tmp_path, capsys):
    code, err = run(["keys", str(tmp_path)], capsys)
    assert code == 0, err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["authorized", "broker.key", "broker.key_secret", "client.key", "client.key_secret",
                     "worker.key", "worker.key_secret"]
    broker = (tmp_path / "broker.key").read_bytes()
    assert run(["keys", str(tmp_path), "--name", "laptop"], capsys)[0] == 0
    assert (tmp_path / "broker.key").read_bytes() == broker  # kept, so peers stay valid
    assert sorted(p.name for p in (tmp_path / "authorized").iterdir()) == ["client.key", "laptop.key", "worker.key"]
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.glob("*.key_secret")} == {"0o600"}


def test_a_secret_key_others_can_read_is_refused_in_one_line(tmp_path):
    from vrstyle.errors import VrstyleError
    from vrstyle.transport.security import generate_keys, peer_keys

    generate_keys(tmp_path)
    peer_keys(tmp_path, "client")  # owner-only: accepted
    (tmp_path / "client.key_secret").chmod(0o644)
    with pytest.raises(VrstyleError, match=r"accessible by others \(mode 0644\); fix it with: chmod 600"):
        peer_keys(tmp_path, "client")


def test_workers_starts_cpu_workers_that_join_and_leave_cleanly(cluster, tiny_model):
    status = cluster.status()
    before, left = {w["pid"] for w in status["workers"]}, status["counters"].get("workers_left", 0)
    process = subprocess.Popen([sys.executable, "-m", "vrstyle.cli", "workers", "--cpu", "1", "--broker",
                                cluster.worker_endpoint, "--style", tiny_model, "--threads", "1", "--heartbeat",
                                str(cluster.heartbeat_s)], stderr=subprocess.PIPE, text=True)
    try:
        until = time.monotonic() + 60
        while len(cluster.status()["workers"]) <= len(before):
            assert time.monotonic() < until and process.poll() is None, "the worker never joined"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    until = time.monotonic() + 5
    while {w["pid"] for w in cluster.status()["workers"]} != before:
        assert time.monotonic() < until
        time.sleep(0.05)
    assert cluster.status()["counters"]["workers_left"] == left + 1  # said goodbye, did not time out


@pytest.mark.parametrize("argv,message", [
    (["broker", "--clients", "tcp://0.0.0.0:5599"], "reachable beyond this host: pass --curve"),
    (["broker", "--clients", "bogus://x", "--insecure"], "cannot listen on bogus://x"),
    (["broker", "--heartbeat", "0"], "must be positive"),
    (["broker", "--curve", "{tmp}/nokeys"], "does not exist (make keys with: vrstyle keys"),
    (["worker", "--warmup", "big"], "--warmup takes WIDTHxHEIGHT"),
    (["worker", "--style", "vangogh"], "unknown style 'vangogh'"),
    (["worker", "--device", "cuda:0", "--style", "{model}"], "CUDA is not available"),
    (["worker", "--credit", "0"], "must be at least 1"),
    (["worker", "--broker", "nonsense", "--style", "{model}"], "cannot connect to broker at nonsense"),
    (["workers", "--gpus", "all"], "no CUDA GPU is visible on this machine; use --cpu N"),
    (["workers", "--cpu", "2", "--style", "vangogh"], "unknown style 'vangogh'"),
    (["workers", "--cpu", "1", "--curve", "{tmp}"], "does not exist (make keys with"),
    (["workers", "--cpu", "1", "--broker", "nonsense", "--style", "{model}", "--threads", "1"],
     "the worker on cpu refused its arguments (exit status 2)"),
    (["workers"], "one of the arguments --gpus --cpu is required"),
    (["keys", "{tmp}", "--name", "a/b"], "must be letters, digits"),
    (["stylize", "{image}", "{tmp}/o.png", "--broker", "ipc://{tmp}/none"], "no answer from the broker"),
    (["stylize", "{image}", "{tmp}/o.png", "--broker", "{endpoint}", "--style", "vangogh"],
     "serves style 'vangogh' (served:"),
    (["stylize", "{image}", "{tmp}/o.png", "--broker", "nonsense"], "cannot connect to broker at nonsense"),
    (["stylize", "{image}", "{tmp}/o.png", "--curve", "{tmp}"], "--curve needs --broker"),
    (["stylize", "{image}", "{tmp}/o.png", "--broker", "{endpoint}", "--device", "cuda"], "--device applies"),
])
def test_bad_input_is_one_clear_line(argv, message, cluster, tiny_model, image, tmp_path, capsys, monkeypatch):
    if ("CUDA" in message or "GPU" in message) and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    monkeypatch.setattr(settings, "CONNECT_TIMEOUT_S", 0.5)
    fill = {"tmp": tmp_path, "image": image, "model": tiny_model, "endpoint": cluster.client_endpoint}
    argv = [part.format(**fill) for part in argv]
    code, err = run(argv, capsys)
    assert code == EXIT_USER_ERROR
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_workers_passes_precision_compile_and_reference_choices_on():
    from vrstyle.cli import build_parser
    from vrstyle.commands.workers import worker_args

    default = build_parser().parse_args(["workers", "--cpu", "1"])
    assert not {"--fp16", "--no-fp16", "--compile", "--no-compile", "--reference"} & set(worker_args(default))
    chosen = build_parser().parse_args(["workers", "--gpus", "0", "--no-fp16", "--compile", "--reference"])
    argv = worker_args(chosen)
    assert "--no-fp16" in argv and "--compile" in argv and "--fp16" not in argv and "--reference" in argv


@pytest.mark.slow
def test_stylize_says_within_seconds_when_its_only_worker_died(tiny_model, tmp_path):
    """Was: 300 s of silence. Now a warning within a few heartbeats, then one error line and exit 2."""
    from vrstyle.transport.cluster import LocalCluster

    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)).save(big)
    with LocalCluster([tiny_model], workers=1, heartbeat_s=1.0, threads=1) as lonely:
        client = subprocess.Popen(
            [sys.executable, "-m", "vrstyle.cli", "-v", "stylize", str(big), str(tmp_path / "out.png"), "--style",
             tiny_model, "--tile", "32", "--halo", "8", "--overlap", "4", "--broker", lonely.client_endpoint,
             "--worker-wait", "2"], stderr=subprocess.PIPE, text=True)
        for line in client.stderr:  # until the tiles are on their way
            if "tiles of" in line:
                break
        lonely.kill_worker(0)
        killed = time.monotonic()
        warned = None
        rest = []
        for line in client.stderr:
            rest.append(line)
            if warned is None and "no worker serves" in line:
                warned = time.monotonic() - killed
        client.wait(timeout=60)
    assert warned is not None and warned < 5.0, rest
    assert client.returncode == EXIT_USER_ERROR, rest
    assert rest[-1].startswith("vrstyle stylize: error: no worker served") and "vrstyle worker --style" in rest[-1]
    assert not any("Traceback" in line for line in rest) and not (tmp_path / "out.png").exists()
