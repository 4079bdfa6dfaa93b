"""vrstyle train: a new style from an artwork on a tiny budget (loss falls, the run resumes)."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

from vrstyle.errors import VrstyleError
from vrstyle.models.registry import resolve_model
from vrstyle.train.perceptual import TrainConfig, export_style, train_style

TINY = dict(batch=2, crop=64, style_size=128, lr=3e-3)


def _style_losses(run_dir) -> list[float]:
    with open(run_dir / "log.csv") as file:
        return [float(row["style"]) for row in csv.DictReader(file)]


def test_training_lowers_the_style_loss_resumes_exports_and_teaches_a_student(shared_data, tmp_path):
    torch.set_num_threads(1)
    art = str(shared_data / "styles" / "jcjohnson" / "the_scream.jpg")
    run_dir = tmp_path / "run"
    train_style(TrainConfig(style_image=art, steps=12, **TINY), run_dir, progress=False)
    losses = _style_losses(run_dir)
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < 0.7 * losses[0], losses
    net = train_style(TrainConfig(style_image=art, steps=15, **TINY), run_dir, progress=False)
    assert len(_style_losses(run_dir)) == 15  # went on from step 12, not from 0
    path = tmp_path / "scream.safetensors"
    export_style(net, TrainConfig(style_image=art, steps=15, **TINY), path, "scream/teacher")
    loaded = resolve_model(str(path)).load()
    image = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        assert torch.allclose(loaded(image), net(image), atol=2.0)  # stored in fp16
    student = tmp_path / "scream-student.safetensors"
    done = subprocess.run([sys.executable, "-m", "vrstyle.cli", "distill", "--teacher", str(path), "--init", "teacher",
                           "--steps", "1", "--crop", "32", "--batch", "1", "--threads", "1", "--run",
                           str(tmp_path / "distill"), "--output", str(student)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr  # the students recipe takes the new style as its teacher
    assert resolve_model(str(student)).name == "scream/student"
    other = str(shared_data / "styles" / "jcjohnson" / "starry_night.jpg")
    with pytest.raises(VrstyleError, match="another artwork"):
        train_style(TrainConfig(style_image=other, steps=16, **TINY), run_dir, progress=False)


def test_train_refuses_bad_input_in_one_line(shared_data, tmp_path):
    not_an_image = tmp_path / "art.jpg"
    not_an_image.write_text("no pixels")
    art = str(shared_data / "styles" / "jcjohnson" / "the_scream.jpg")
    for args, message in [(("--style-image", str(not_an_image)), "not a readable image"),
                          (("--style-image", art, "--init", "nope"), "--init must be"),
                          (("--style-image", art, "--output", str(tmp_path / "x.pth")), "expects a .safetensors"),
                          (("--style-image", str(tmp_path / "missing.jpg")), "does not exist")]:
        done = subprocess.run([sys.executable, "-m", "vrstyle.cli", "train", "--run", str(tmp_path / "r"), "--steps",
                               "1", *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # a failed start leaves no folder
