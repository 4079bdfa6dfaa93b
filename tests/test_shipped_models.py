"""The binary students shipped inside the package: files, cards, fresh-install use, bad files."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vrstyle import settings
from vrstyle.errors import VrstyleError
from vrstyle.images import write_rgb
from vrstyle.kernels import PACKING
from vrstyle.models import StudentNet, resolve_model
from vrstyle.models.packed import save_model
from vrstyle.models.registry import SHIPPED_DIR, STYLES

SHIPPED = [SHIPPED_DIR / f"{style}-binary.safetensors" for style in STYLES]


@pytest.mark.parametrize("path", SHIPPED, ids=STYLES)
def test_every_style_ships_a_small_packed_binary_student_with_a_card(path):
    assert path.is_file(), f"{path.name} is not shipped"
    assert path.stat().st_size <= settings.MODEL_FILE_LIMIT
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        keys = list(handle.keys())
    assert meta["name"] == f"{path.name.split('-')[0]}/binary" and meta["arch"] == "student"
    assert meta["packing"] == PACKING
    body = {f"res{i}.conv{j}.conv2d.weight.bits" for i in range(1, 6) for j in (1, 2)}
    assert body <= set(keys)  # the whole residual body is 1-bit
    card = path.with_suffix(".md")
    text = card.read_text()
    for needed in ("Recipe", "CPU", "PSNR", "Data"):
        assert needed in text, f"{card.name} says nothing about {needed}"


def test_bare_style_names_pick_the_shipped_binary_student():
    assert resolve_model("candy").name == "candy/binary"
    net = resolve_model("candy").load()
    assert isinstance(net, StudentNet) and net.layers["body"] == "binary"


def _run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vrstyle.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_stylize_works_on_a_fresh_install_without_shared_data(tmp_path):
    """No ../shared: the shipped student stylises, through the tiled path."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 40, (96, 160, 3)), 0, 255).astype(np.uint8)
    write_rgb(tmp_path / "in.png", image)
    result = _run_cli("stylize", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--style", "candy",
                      "--tile", "64", "--halo", "24", env={settings.DATA_ENV: str(empty)})
    assert result.returncode == 0, result.stderr
    from vrstyle.images import read_rgb

    out = read_rgb(tmp_path / "out.png")
    assert out.shape == image.shape and np.abs(out.astype(int) - image).mean() > 20


@pytest.fixture
def small_student_file(tmp_path, random_weights) -> Path:
    torch.manual_seed(0)
    net = random_weights(StudentNet(width=8, blocks=1))
    path = tmp_path / "small.safetensors"
    save_model(net, path, "small/binary", "student", {"width": 8, "blocks": 1})
    return path


def test_packed_files_load_back_to_the_same_network(small_student_file, random_weights):
    torch.manual_seed(0)
    net = random_weights(StudentNet(width=8, blocks=1))
    loaded = resolve_model(str(small_student_file)).load()
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        # fp16 storage of the float parts; the binary parts are exact
        torch.testing.assert_close(loaded(x), net(x), rtol=0.05, atol=3.0)
    assert torch.equal(torch.sign(loaded.res1.conv1.conv2d.weight), torch.where(net.res1.conv1.conv2d.weight >= 0, 1.0, -1.0))


def _rewrite(source: Path, target: Path, tensors=None, metadata=None) -> str:
    with safe_open(str(source), framework="pt") as handle:
        meta = handle.metadata()
    state = load_file(str(source))
    save_file(tensors(state) if tensors else state, str(target), metadata={**meta, **(metadata or {})})
    return str(target)


@pytest.mark.parametrize("damage,message", [
    ("truncated", "not a vrstyle model file"),
    ("architecture", "unknown architecture 'resnet'"),
    ("config", "the network expects"),
    ("packing", "bit packing 'sign-bits-msb/9'"),
    ("bits", "packed bits of shape"),
])
def test_bad_model_files_are_one_clear_error_line(small_student_file, tmp_path, damage, message):
    bad = tmp_path / "bad.safetensors"
    if damage == "truncated":
        bad.write_bytes(small_student_file.read_bytes()[:3000])
    elif damage == "architecture":
        _rewrite(small_student_file, bad, metadata={"arch": "resnet"})
    elif damage == "config":
        _rewrite(small_student_file, bad, metadata={"config": json.dumps({"width": 16, "blocks": 1})})
    elif damage == "packing":
        _rewrite(small_student_file, bad, metadata={"packing": "sign-bits-msb/9"})
    else:
        _rewrite(small_student_file, bad, tensors=lambda s: {
            k: (v[:, :-1].contiguous() if k == "res1.conv1.conv2d.weight.bits" else v) for k, v in s.items()})
    with pytest.raises(VrstyleError, match=message):
        resolve_model(str(bad)).load()
    photo = tmp_path / "in.png"
    write_rgb(photo, np.zeros((32, 32, 3), np.uint8))
    result = _run_cli("stylize", str(photo), str(tmp_path / "out.png"), "--style", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vrstyle stylize: error:") and message.split("'")[0] in lines[0]


def test_shipped_student_tiles_without_seams():
    """With frame-shared statistics the binary student's tiles agree with the whole image."""
    import tiles
    from vrstyle.models import StyleEngine
    from vrstyle.stylize import measure_stats, stylize_image, stylize_untiled

    from test_seams import seam_mask

    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, 8, 12, generator=generator) * 255
    fine = torch.rand(1, 3, 256, 384, generator=generator) * 60 - 30
    image = (torch.nn.functional.interpolate(coarse, size=(256, 384), mode="bicubic") + fine).clamp(0, 255)
    image = image[0].permute(1, 2, 0).round().to(torch.uint8).numpy()
    engine = StyleEngine(resolve_model("candy").load())
    grid = tiles.plan_grid(256, 384, tile=128, halo=56, overlap=16)
    stats = measure_stats(engine, image, grid, count=len(grid))
    whole = stylize_untiled(engine, image, stats).astype(int)
    tiled = stylize_image(engine, image, grid, batch=3).astype(int)
    difference = np.abs(tiled - whole)
    assert difference.mean() < 0.05 and (difference > 1).mean() < 1e-3, (difference.mean(), difference.max())
    naive = np.abs(stylize_image(engine, image, grid, shared_stats=False).astype(int) - whole).max(axis=2)
    assert naive[seam_mask(grid)].mean() > 5 * max(difference.mean(), 0.1)


@pytest.mark.parametrize("path", SHIPPED, ids=STYLES)
def test_shipped_student_on_popcount_kernels_equals_its_float_simulation(path):
    """The popcount kernels change no bit of any shipped student's output; the engine's CPU
    fast path (those and the compiled RGB tail) stays within float rounding of the reference."""
    from vrstyle.models.engine import StyleEngine
    from vrstyle.models.fast import use_fast_kernels

    model = resolve_model(str(path)).load().eval()
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (1, 3, 60, 84)).astype(np.float32))
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(use_fast_kernels(copy.deepcopy(model))(x), expected)
    fast, reference = StyleEngine(model), StyleEngine(model, reference=True)
    assert fast.fast and not reference.fast
    pixels = np.random.default_rng(1).integers(0, 256, (2, 60, 84, 3), dtype=np.uint8)
    stats = reference.measure(pixels, margin=8)[1:].astype(np.float32)
    for got, want in ((fast.stylize(pixels, None), reference.stylize(pixels, None)),
                      (fast.stylize(pixels, stats, crop=8), reference.stylize(pixels, stats, crop=8))):
        difference = np.abs(got.astype(int) - want)
        assert difference.max() <= 1 and (difference > 0).mean() < 0.01, (difference.max(), difference.mean())
