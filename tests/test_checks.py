"""Every command checks its paths and sizes before any work: one line, exit 2, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vrstyle.cli import main
from vrstyle.errors import EXIT_USER_ERROR
from vrstyle.images import read_rgb

HUGE = "99999x99999"
UNWRITABLE = "/proc/vrstyle-test"
"""Under /proc nothing can be made, even by root (permission bits would not say so)."""


@pytest.fixture
def photo(tmp_path) -> str:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return str(path)


def cases(t: Path, photo: str) -> list[tuple[list[str], str]]:
    """(argv, what the one line must say) for every kind of path and size option of every command."""
    a_file = t / "a-file"
    a_file.write_text("")
    return [
        (["stylize", str(t), str(t / "o.png")], "is a folder, not a file"),
        (["stylize", str(t / "absent.png"), str(t / "o.png")], "does not exist"),
        (["stylize", photo, str(t / "o.xyz")], "unknown image format '.xyz'"),
        (["stylize", photo, str(t)], "is a folder; name a file"),
        (["stylize", photo, str(t / "no" / "o.png")], "folder " + str(t / "no") + " does not exist"),
        (["stylize", photo, f"{UNWRITABLE}/o.png"], "cannot write"),
        (["stylize", photo, photo], "is the input"),
        (["mirror", "--screenshot", str(t / "shot.xyz")], "unknown image format"),
        (["mirror", "--screenshot", f"{UNWRITABLE}/shot.png"], "cannot write"),
        (["mirror", "--dump", f"{UNWRITABLE}/x.npz"], "cannot write"),
        (["mirror", "--dump", str(t / "frame.txt")], "expects a .npz file"),
        (["mirror", "--eye-size", HUGE], "needs about"),
        (["mirror", "--source", str(t / "absent.png")], "does not exist"),
        (["bench", "--eye-size", HUGE], "needs about"),
        (["bench", "--out", str(a_file)], "is a file, not a folder"),
        (["bench", "--out", f"{UNWRITABLE}/results"], "cannot write into"),
        (["headset", "--record", f"{UNWRITABLE}/rec"], "cannot write into"),
        (["headset", "--record", str(a_file)], "is a file, not a folder"),
        (["distill", "--teacher", "candy", "--run", str(a_file)], "is a file, not a folder"),
        (["distill", "--teacher", "candy", "--run", str(t / "run"), "--output", f"{UNWRITABLE}/s.safetensors"],
         "cannot write"),
        (["distill", "--teacher", "candy", "--run", str(t / "run"), "--output", str(t / "s.pth")],
         "expects a .safetensors file"),
        (["eval", "candy", "--out", f"{UNWRITABLE}/x"], "cannot write"),
        (["eval", "candy", "--out", str(t)], "is a folder; name a prefix"),
        (["eval", "candy", "--out", str(t / "r"), "--limit", "0"], "at least 1"),
        (["eval", "candy", "--out", str(t / "r"), "--cache", str(a_file)], "is a file, not a folder"),
    ]


def children() -> set[int]:
    """Processes whose parent is this one (Linux /proc)."""
    mine = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            mine.add(int(stat.parent.name))
    return mine


def test_every_bad_path_or_size_is_one_line_before_any_work(tmp_path, photo, capsys):
    made = tmp_path / "made"
    made.mkdir()
    shm, started = set(os.listdir("/dev/shm")), children()
    for argv, message in cases(made, photo):
        before = sorted(made.rglob("*"))
        try:
            code = main(argv)  # refused in the command, before its work
        except SystemExit as stopped:  # refused while parsing
            code = stopped.code
        err = capsys.readouterr().err
        assert code == EXIT_USER_ERROR, (argv, err)
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, (argv, err)
        assert sorted(made.rglob("*")) == before, argv  # no file or folder left behind
        assert children() <= started and set(os.listdir("/dev/shm")) <= shm, argv  # no process, no shared memory


def test_the_installed_command_refuses_before_loading_a_model(tmp_path, photo):
    """In a fresh process, as a user runs it: the refusal is immediate and leaves no output."""
    done = subprocess.run([sys.executable, "-m", "vrstyle.cli", "stylize", photo, str(tmp_path / "o.xyz")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_USER_ERROR and done.stderr.count("\n") == 1, done.stderr
    assert "torch" not in done.stderr and not (tmp_path / "o.xyz").exists()


@pytest.mark.parametrize("mode,values,expected", [
    ("I;16", np.array([[0, 257 * 128, 65535]], dtype=np.uint16), [0, 128, 255]),
    ("F", np.array([[0.0, 0.5, 1.0]], dtype=np.float32), [0, 128, 255]),
    ("L", np.array([[0, 128, 255]], dtype=np.uint8), [0, 128, 255]),
])
def test_wide_and_grey_images_keep_their_range(tmp_path, mode, values, expected):
    """A 16-bit greyscale PNG is not clipped to white (it was: stylize wrote a flat image)."""
    path = tmp_path / ("grey.tif" if mode == "F" else "grey.png")
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode == mode or (mode, image.mode) == ("I;16", "I")  # the floor, Pillow 10.1, opens it as "I"
    rgb = read_rgb(path)
    assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8
    assert rgb[0, :, 0].tolist() == expected and (rgb == rgb[..., :1]).all()


def test_other_modes_become_the_rgb_they_show(tmp_path):
    colours = {"CMYK": ((0, 255, 255, 0), [255, 0, 0]), "RGBA": ((10, 20, 30, 0), [255, 255, 255]),
               "LA": ((0, 255), [0, 0, 0]), "1": (1, [255, 255, 255])}
    for mode, (colour, expected) in colours.items():
        path = tmp_path / f"{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
        Image.new(mode, (4, 4), colour).save(path)
        assert read_rgb(path)[0, 0].tolist() == expected, mode
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.save(tmp_path / "p.png")
    assert read_rgb(tmp_path / "p.png")[0, 0].tolist() == [200, 100, 50]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.zeros((10, 20, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.save(tmp_path / "turned.jpg", exif=exif)
    assert read_rgb(tmp_path / "turned.jpg").shape == (20, 10, 3)


def test_a_damaged_or_foreign_checkpoint_is_one_line(tmp_path):
    torch = pytest.importorskip("torch")
    from vrstyle.errors import VrstyleError
    from vrstyle.train.distill import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"PK\x03\x04 half a checkpoint")
    with pytest.raises(VrstyleError, match=r"checkpoint.pt is damaged \(.*\); remove it to start the run over"):
        load_checkpoint(path, "cpu")
    torch.save([1, 2, 3], path)
    with pytest.raises(VrstyleError, match="not a vrstyle distill checkpoint"):
        load_checkpoint(path, "cpu")


def test_a_foreign_safetensors_file_says_what_it_lacks(tmp_path, photo, capsys):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    assert main(["stylize", photo, str(tmp_path / "o.png"), "--style", str(foreign)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "without vrstyle's metadata (arch, config)" in err, err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.gl
@pytest.mark.slow
def test_sigterm_ends_a_command_as_ctrl_c_does(tmp_path, tiny_model, xvfb):
    """Workers stopped, shared memory released, one line, exit 130 (was 143 with leaked segments)."""
    import signal
    import time

    def segments(pid: int) -> set[str]:
        return {name for name in os.listdir("/dev/shm") if name.startswith(f"vrs_{pid:x}_")}

    env = {**os.environ, "DISPLAY": xvfb}
    mirror = subprocess.Popen([sys.executable, "-m", "vrstyle.cli", "mirror", "--style", tiny_model, "--eye-size",
                               "64x64", "--workers", "1", "--threads", "1"], env=env, stderr=subprocess.PIPE, text=True)
    until = time.monotonic() + 120
    while not segments(mirror.pid) and time.monotonic() < until and mirror.poll() is None:
        time.sleep(0.2)  # until frames flow through shared memory
    assert segments(mirror.pid), "the mirror never used shared memory"
    mirror.send_signal(signal.SIGTERM)
    _, err = mirror.communicate(timeout=60)
    assert mirror.returncode == 130, err
    assert err.strip().splitlines()[-1] == "vrstyle mirror: interrupted" and "Traceback" not in err, err
    assert not segments(mirror.pid)


def test_a_failed_start_leaves_no_empty_folder(tmp_path, capsys, monkeypatch):
    """headset --record and distill --run make their folders only once the work can start."""
    pytest.importorskip("xr", reason="needs pyopenxr (vrstyle[xr])")
    pytest.importorskip("torch")
    monkeypatch.setenv("XR_RUNTIME_JSON", str(tmp_path / "no-runtime.json"))
    assert main(["headset", "--record", str(tmp_path / "rec")]) == EXIT_USER_ERROR
    assert main(["distill", "--teacher", "vangogh", "--run", str(tmp_path / "run")]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "XR_RUNTIME_JSON" in err and "vangogh" in err, err
    assert not (tmp_path / "rec").exists() and not (tmp_path / "run").exists()


def test_a_pickle_of_objects_is_refused_in_one_line(tmp_path, photo, capsys):
    """Was: six lines of torch's advice on loading code (weights_only); vrstyle never unpickles objects."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "objects.pth"
    torch.save({"weight": torch.zeros(2), "thing": Path("somewhere")}, path)
    assert main(["stylize", photo, str(tmp_path / "o.png"), "--style", str(path)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds Python objects besides tensors" in err, err


def test_an_interrupt_lost_in_a_ctypes_callback_is_delivered_again():
    """Was: SIGTERM while numba compiled a kernel (llvmlite calls back into Python through
    ctypes) raised KeyboardInterrupt inside the callback, where Python ignores it, and the
    command ran on."""
    code = """
import ctypes, signal, sys, time
from vrstyle.cli import install_interrupts
install_interrupts()

@ctypes.CFUNCTYPE(None)
def callback():
    signal.raise_signal(signal.SIGTERM)  # its handler raises here, inside the callback
    sum(range(1000))

try:
    callback()
    time.sleep(5)
    print("ran on")
except KeyboardInterrupt:
    print("interrupted")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "interrupted", (result.stdout, result.stderr)
    assert "Exception ignored" not in result.stderr, result.stderr
