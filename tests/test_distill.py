"""Distillation and evaluation commands end to end, on tiny students and crops."""

from __future__ import annotations

import csv
import json

import pytest

from vrstyle.cli import main
from vrstyle.models import resolve_model

pytestmark = [pytest.mark.data, pytest.mark.slow]

TINY = ["--student", "johnson", "--config", '{"width": 4, "blocks": 1}', "--init", "random", "--batch", "1",
        "--crop", "32", "--threads", "1"]


def test_distill_trains_checkpoints_resumes_and_exports(shared_data, tmp_path):
    run = tmp_path / "run"
    args = ["distill", "--teacher", "candy", *TINY, "--vgg-weight", "0.1", "--colour", "luminance",
            "--run", str(run)]
    assert main([*args, "--steps", "2"]) == 0
    assert main([*args, "--steps", "3", "--output", str(tmp_path / "tiny.safetensors")]) == 0
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]  # resumed at step 2, not restarted
    assert all(float(r["perceptual"]) > 0 for r in rows)
    spec = resolve_model(str(tmp_path / "tiny.safetensors"))
    assert spec.name == "candy/johnson" and spec.config == {"width": 4, "blocks": 1}
    spec.load()
    assert main(["distill", "--teacher", "mosaic", *TINY, "--run", str(run), "--steps", "4"]) == 2


def test_distill_rejects_bad_settings_in_one_line(shared_data, tmp_path, capsys):
    assert main(["distill", "--teacher", "candy", *TINY, "--colour", "sepia", "--run", str(tmp_path)]) == 2
    assert "unknown colour correction 'sepia'" in capsys.readouterr().err
    assert main(["distill", "--teacher", "candy", "--layers", "body", "--run", str(tmp_path)]) == 2
    assert "GROUP=KIND" in capsys.readouterr().err


def test_eval_writes_table_json_and_plot(shared_data, tmp_path, capsys):
    model = tmp_path / "tiny.safetensors"
    assert main(["distill", "--teacher", "candy", *TINY, "--steps", "1", "--run", str(tmp_path / "run"),
                 "--output", str(model)]) == 0
    out = tmp_path / "table"
    assert main(["eval", "candy/teacher", str(model), "--teacher", "candy", "--sets", "bsds500/test", "--limit", "1",
                 "--cache", str(tmp_path / "cache"), "--out", str(out), "--threads", "1"]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    reference, report = result["models"]
    # The Johnson net's multiply-adds a pixel: 153,792 as written, less 2 x 10,240 for its two
    # upsampling layers reading 2x2 low-resolution taps instead of 3x3 upsampled ones.
    assert reference["psnr"] is None and reference["cost"]["float_macs"] == pytest.approx(133_312, rel=0.01)
    assert 0 < report["psnr"] < 40 and 0 < report["ssim"] <= 1 and report["images"] == 1
    assert report["cost"]["float_macs"] > 0 and report["file_bytes"] == model.stat().st_size
    table = out.with_suffix(".md").read_text()
    assert "| candy/teacher | reference |" in table and "| candy/johnson |" in table
    assert out.with_suffix(".png").stat().st_size > 10_000


BLOCKWISE = ["--student", "student", "--config", '{"layers": {"body": "binary"}, "planes": 2, "learned_scale": true}',
             "--init", "blockwise", "--calibration-images", "2", "--block-steps", "2", "--block-batch", "1",
             "--batch", "1", "--crop", "32", "--noise", "1", "--threads", "1"]


def test_blockwise_recipe_trains_each_block_then_end_to_end_and_resumes(shared_data, tmp_path):
    import torch

    from vrstyle.models import load_model

    run = tmp_path / "run"
    assert main(["distill", "--teacher", "candy", *BLOCKWISE, "--steps", "1", "--run", str(run)]) == 0
    blocks = list(csv.DictReader(open(run / "blocks.csv")))
    assert [int(r["block"]) for r in blocks] == [1, 2, 3, 4, 5]
    assert all(0 < float(r["relative_error"]) < 10 for r in blocks)
    assert (run / "features.pt").is_file()
    output = tmp_path / "student.safetensors"
    assert main(["distill", "--teacher", "candy", *BLOCKWISE, "--steps", "2", "--run", str(run),
                 "--output", str(output)]) == 0
    assert len(list(csv.DictReader(open(run / "blocks.csv")))) == 5  # resumed: blocks not trained again
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2] and all(float(r["stability"]) >= 0 for r in rows)
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=False)
    teacher = load_model("candy/teacher").state_dict()
    assert checkpoint["blocks_done"] == 5
    assert torch.equal(checkpoint["model"]["conv1.conv2d.weight"], teacher["conv1.conv2d.weight"])  # frozen encoder
    assert not torch.equal(checkpoint["model"]["res1.conv1.conv2d.weight"], teacher["res1.conv1.conv2d.weight"])
    student = resolve_model(str(output)).load()
    assert student.res3.conv2.conv2d.planes == 2 and output.stat().st_size < 1_000_000


def test_a_run_folder_of_another_architecture_is_refused_in_one_line(shared_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["distill", "--teacher", "candy", *TINY, "--steps", "1", "--run", str(run)]) == 0
    capsys.readouterr()
    assert main(["distill", "--teacher", "candy", *BLOCKWISE, "--steps", "1", "--run", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "belongs to another student" in err[0]


def test_a_student_file_is_continued_with_its_encoder_frozen_and_a_cosine_schedule(shared_data, tmp_path, capsys):
    import torch

    start = tmp_path / "start.safetensors"
    assert main(["distill", "--teacher", "candy", *TINY, "--steps", "1", "--run", str(tmp_path / "a"),
                 "--output", str(start)]) == 0
    continued = [arg if arg != "random" else str(start) for arg in TINY]
    run = tmp_path / "b"
    assert main(["distill", "--teacher", "candy", *continued, "--steps", "2", "--schedule", "cosine",
                 "--run", str(run)]) == 0
    before = resolve_model(str(start)).load().state_dict()
    after = torch.load(run / "checkpoint.pt", weights_only=False)["model"]
    assert torch.equal(after["conv1.conv2d.weight"], before["conv1.conv2d.weight"])  # frozen encoder
    assert not torch.equal(after["res1.conv1.conv2d.weight"], before["res1.conv1.conv2d.weight"])
    capsys.readouterr()
    wider = [arg if arg != '{"width": 4, "blocks": 1}' else '{"width": 8, "blocks": 1}' for arg in continued]
    assert main(["distill", "--teacher", "candy", *wider, "--steps", "1", "--run", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--init is not a student of this --student/--config" in err[0]


def test_the_cosine_schedule_decays_to_zero_at_the_last_step():
    from vrstyle.train.distill import DistillConfig

    cfg = DistillConfig(steps=100, lr=1e-3, schedule="cosine")
    assert [cfg.lr_at(s) for s in (0, 50, 100)] == pytest.approx([1e-3, 5e-4, 0.0])
    assert DistillConfig(steps=100, lr=1e-3).lr_at(99) == 1e-3
    with pytest.raises(Exception, match="unknown schedule"):
        DistillConfig(schedule="linear").check()


def test_the_blockwise_stage_checkpoints_within_a_block_and_resumes_there(shared_data, tmp_path, monkeypatch, caplog):
    """Stopped after the first step of block 1 (a checkpoint every step here, every few minutes
    in a real run), the run resumes at that step, not at the block's start."""
    import logging

    import torch

    from vrstyle.train import blockwise, distill

    monkeypatch.setattr(blockwise, "CHECKPOINT_SECONDS", 0.0)
    save = distill._save_checkpoint

    def save_then_stop(*args, block_state=None):
        save(*args, block_state=block_state)
        if block_state is not None:
            raise KeyboardInterrupt

    run = tmp_path / "run"
    monkeypatch.setattr(distill, "_save_checkpoint", save_then_stop)
    assert main(["distill", "--teacher", "candy", *BLOCKWISE, "--steps", "1", "--run", str(run)]) == 130
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=False)
    assert checkpoint["blocks_done"] == 0 and checkpoint["block_state"]["step"] == 1
    monkeypatch.setattr(distill, "_save_checkpoint", save)
    with caplog.at_level(logging.INFO, logger="vrstyle.train.distill"):
        assert main(["distill", "--teacher", "candy", *BLOCKWISE, "--steps", "1", "--run", str(run)]) == 0
    assert "resuming block 1 at step 1" in caplog.text
    assert [int(r["block"]) for r in csv.DictReader(open(run / "blocks.csv"))] == [1, 2, 3, 4, 5]
    assert "block_state" not in torch.load(run / "checkpoint.pt", weights_only=False)
