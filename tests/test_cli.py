"""The vrstyle command: stylize end to end, and one clear line for every bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vrstyle import settings
from vrstyle.cli import EXIT_USER_ERROR, main
from vrstyle.models import create_model


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> str:
    """A full-size Johnson net with random weights: lets the CLI run without the shared data."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "random.pth"
    torch.save(create_model("johnson").state_dict(), path)
    return str(path)


@pytest.fixture
def image(tmp_path) -> str:
    path = tmp_path / "in.png"
    pixels = np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def run(argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of the command, refused while parsing or in the command."""
    try:
        code = main(argv)
    except SystemExit as stopped:
        code = stopped.code
    return code, capsys.readouterr().err


def test_stylize_writes_the_stylized_image(image, random_model, tmp_path, capsys):
    out = tmp_path / "out.jpg"
    code, err = run(["stylize", image, str(out), "--style", random_model, "--tile", "64", "--halo", "16",
                     "--overlap", "8"], capsys)
    assert code == 0, err
    assert err.strip().splitlines()[-1].startswith(f"vrstyle stylize: wrote {out} (130x90, {random_model}, ")
    result = np.asarray(Image.open(out))
    assert result.shape == (90, 130, 3)
    assert np.abs(result.astype(int) - np.asarray(Image.open(image)).astype(int)).mean() > 5


@pytest.mark.data
def test_stylize_with_a_teacher_by_style_name(shared_data, tmp_path, capsys):
    out = tmp_path / "golden.png"
    source = Image.open(shared_data / "content" / "golden_gate.jpg").convert("RGB").resize((240, 180))
    source.save(tmp_path / "in.png")
    code, err = run(["stylize", str(tmp_path / "in.png"), str(out), "--style", "mosaic/teacher",
                     "--tile", "128", "--halo", "56"], capsys)
    assert code == 0, err
    assert Image.open(out).size == (240, 180)


def corrupt_jpeg(tmp_path) -> str:
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return str(path)


def truncated_png(tmp_path) -> str:
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(full)
    path = tmp_path / "truncated.png"
    path.write_bytes(full.read_bytes()[:3000])
    return str(path)


def wrong_shapes_model(tmp_path) -> str:
    path = tmp_path / "narrow.pth"
    torch.save(create_model("johnson", width=16).state_dict(), path)
    return str(path)


@pytest.mark.parametrize("make_args,message", [
    (lambda t, i, m: [str(t / "absent.png"), str(t / "o.png"), "--style", m], "does not exist"),
    (lambda t, i, m: [corrupt_jpeg(t), str(t / "o.png"), "--style", m], "not a readable image"),
    (lambda t, i, m: [truncated_png(t), str(t / "o.png"), "--style", m], "not a readable image"),
    (lambda t, i, m: [i, str(t / "o.png"), "--style", "vangogh"], "unknown style 'vangogh'"),
    (lambda t, i, m: [i, str(t / "o.png"), "--style", wrong_shapes_model(t)], "has shape"),
    (lambda t, i, m: [i, str(t / "o.png"), "--style", m, "--tile", "32", "--halo", "56"], "halo (56 px) is larger"),
    (lambda t, i, m: [i, str(t / "o.png"), "--style", m, "--tile", "64", "--overlap", "40"], "overlap (40 px)"),
    (lambda t, i, m: [i, str(t / "no" / "o.png"), "--style", m, "--tile", "64", "--halo", "8"], "does not exist"),
    (lambda t, i, m: [i, str(t / "o.xyz"), "--style", m, "--tile", "64", "--halo", "8"], "unknown image format"),
    (lambda t, i, m: [i, str(t / "o.png"), "--style", m, "--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_input_is_one_clear_line(make_args, message, image, random_model, tmp_path, capsys):
    code, err = run(["stylize", *make_args(tmp_path, image, random_model)], capsys)
    assert code == EXIT_USER_ERROR
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert lines[0].startswith("vrstyle stylize: error:")


@pytest.mark.parametrize("argv, message", [
    (["stylize", __file__, "o.png", "--batch", "0"], "argument --batch: must be at least 1, got 0"),
    (["stylize", __file__, "o.png", "--stats-tiles", "-2"], "argument --stats-tiles: must be at least 1, got -2"),
    (["stylize", __file__, "o.png", "--tile", "0"], "argument --tile: must be at least 1, got 0"),
    (["eval", "candy/binary", "--out", "x", "--limit", "0"], "argument --limit: must be at least 1, got 0"),
    (["distill", "--run", "r", "--batch", "0"], "argument --batch: must be at least 1, got 0"),
    (["headset", "--workers", "0"], "argument --workers: must be at least 1, got 0"),
    (["bench", "--eye-size", "quest9"], "unknown eye preset 'quest9'"),
    (["bench", "--eye-size", "8x8"], "eye size 8x8 is too small"),
    (["mirror", "--consistency", "both", "--carry", "0"], "argument --carry: carried share must be in (0, 1], got 0"),
    (["headset", "--carry", "most"], "argument --carry: carried share must be a number in (0, 1], got 'most'"),
])
def test_counts_and_sizes_are_refused_while_parsing(argv, message, capsys):
    """Before any work: one line naming the option, exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == EXIT_USER_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize("command", ["mirror", "headset"])
def test_a_carried_share_without_temporal_consistency_is_one_line(command, capsys):
    """--carry would do nothing without temporal consistency: refused before any work."""
    assert main([command, "--consistency", "stereo", "--carry", "0.5"]) == EXIT_USER_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"vrstyle {command}: error: --carry needs --consistency temporal or both"]


def test_every_size_is_width_by_height_and_every_default_is_in_the_help(monkeypatch):
    from vrstyle.cli import build_parser

    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping inside a default
    parser = build_parser()
    assert parser.parse_args(["bench", "--eye-size", "96x80"]).eye_size == ("96x80", (80, 96))
    assert parser.parse_args(["mirror", "--eye-size", "96x80"]).eye_size == ("96x80", (80, 96))
    assert parser.parse_args(["mirror"]).eye_size is None  # chosen for the machine (test_live.py)
    assert parser.parse_args(["bench"]).eye_size == (settings.BENCH_EYE, settings.EYE_PRESETS[settings.BENCH_EYE])
    helps = {name: " ".join(sub.format_help().split()) for name, sub in subcommands(parser).items()}
    for name, shown in [("stylize", "feather ramp (default linear)"), ("mirror", "default 640x720, or"),
                        ("distill", "default calibrate"), ("distill", "perceptual term (default 0.0)"),
                        ("distill", "none or luminance (default none)"), ("eval", "reference (default candy)"),
                        ("eval", "(default kodak24,bsds500/test)"), ("eval", "(default runs/teacher-cache)")]:
        assert shown in helps[name], (name, shown)


def subcommands(parser) -> dict:
    import argparse

    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_bad_arguments_are_one_line_from_the_installed_command():
    """The console script itself: argparse mistakes are one line too, with no traceback."""
    result = subprocess.run([sys.executable, "-m", "vrstyle.cli", "stylize", __file__, "out.png", "--tile", "big"],
                            capture_output=True, text=True)
    assert result.returncode == EXIT_USER_ERROR
    assert result.stderr.count("\n") == 1 and "invalid int value: 'big'" in result.stderr
    assert "Traceback" not in result.stderr


def test_info_reports_every_section_as_json_without_a_runtime_or_gpu(tmp_path):
    """`vrstyle info --json` in a fresh process, pointed at no OpenXR runtime and no data folder."""
    import json
    import os

    env = {**os.environ, "XR_RUNTIME_JSON": str(tmp_path / "none.json"), "VRSTYLE_DATA": str(tmp_path / "none")}
    env.pop("DISPLAY", None)
    result = subprocess.run([sys.executable, "-m", "vrstyle.cli", "info", "--json"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"vrstyle", "cpu", "gpu", "opengl", "openxr", "styles"}
    assert report["vrstyle"]["versions"]["torch"] == torch.__version__.split("+")[0] or \
        report["vrstyle"]["versions"]["torch"] == torch.__version__
    assert report["cpu"]["binary_kernels"] in ("avx512-vpopcntdq", "avx2", "popcnt", "generic")
    assert report["openxr"]["runtime"] is None and "XR_RUNTIME_JSON" in report["openxr"]["hint"]
    assert report["styles"]["data"] is None and "candy/binary" in report["styles"]["models"]
    assert "VRSTYLE_DATA" in report["styles"]["hint"]
    plain = subprocess.run([sys.executable, "-m", "vrstyle.cli", "info"], capture_output=True, text=True, env=env,
                           timeout=120)
    lines = plain.stdout.splitlines()
    assert plain.returncode == 0 and [line.split()[0] for line in lines if not line.startswith(" ")] == ["vrstyle", "cpu", "gpu", "opengl", "openxr", "styles"]


def test_version_and_an_output_that_is_the_input(image, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("vrstyle ")
    before = open(image, "rb").read()
    assert main(["stylize", image, image]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the input" in err[0]
    assert open(image, "rb").read() == before


def reference_rows() -> dict[str, str]:
    """Each command's row of the README's command reference, as --help defines it."""
    import argparse

    rows = {}
    from vrstyle.cli import build_parser

    for name, sub in subcommands(build_parser()).items():
        positional = " ".join(a.metavar or a.dest.upper() for a in sub._actions if not a.option_strings)
        options = [next(s for s in a.option_strings if s.startswith("--")) for a in sub._actions
                   if a.option_strings and not isinstance(a, argparse._HelpAction) and a.dest != "more_verbose"]
        rows[name] = f"| `vrstyle {name}{' ' + positional if positional else ''}` | " + \
            ", ".join(f"`{option}`" for option in options) + " |"
    return rows


def test_the_readme_command_reference_matches_the_help():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Command reference", 1)[1].split("\n## ", 1)[0]
    shown = {line.split("`")[1].split()[1]: line for line in section.splitlines() if line.startswith("| `vrstyle ")}
    expected = reference_rows()
    assert shown.keys() == expected.keys()
    for name, row in expected.items():
        assert shown[name] == row, f"README row for {name} differs from --help:\n{shown[name]}\n{row}"


def test_verbose_goes_before_or_after_the_command():
    from vrstyle.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-v", "info"]).verbose == 1
    assert parser.parse_args(["info", "-vv"]).more_verbose == 2


def test_an_unknown_style_lists_the_short_names_first(image, tmp_path, capsys):
    code, err = run(["stylize", image, str(tmp_path / "o.png"), "--style", "vangogh"], capsys)
    assert code == EXIT_USER_ERROR
    assert "available here: candy, mosaic, pointilism, rain_princess, udnie, candy/binary" in err, err


def test_the_broker_says_where_it_listens_and_what_it_counted(tmp_path):
    import signal

    broker = subprocess.Popen([sys.executable, "-m", "vrstyle.cli", "broker", "--clients", f"ipc://{tmp_path}/c",
                               "--workers", f"ipc://{tmp_path}/w"], stderr=subprocess.PIPE, text=True)
    first = broker.stderr.readline()
    assert first == f"vrstyle broker: clients on ipc://{tmp_path}/c, workers on ipc://{tmp_path}/w, no keys; Ctrl-C stops\n"
    broker.send_signal(signal.SIGINT)
    _, rest = broker.communicate(timeout=30)
    assert broker.returncode == 0 and rest.strip().startswith("vrstyle broker: stopped ("), rest
