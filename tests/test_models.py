"""Style networks: every registered architecture, the teachers, model files and the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import tiles
from vrstyle.errors import VrstyleError
from vrstyle.models import ARCHITECTURES, StyleEngine, create_model, resolve_model
from vrstyle.models.registry import load_weights
from vrstyle.normstats import combine_moments, moments_to_stats



@pytest.fixture(autouse=True)
def _inference():
    """Gradients off in this module only (a module-level switch would leak into other tests)."""
    with torch.no_grad():
        yield


@pytest.fixture(params=sorted(ARCHITECTURES))
def model(request) -> torch.nn.Module:
    torch.manual_seed(0)
    net = create_model(request.param).eval()
    for module in net.modules():  # non-trivial affine parameters, so the checks below can fail
        if hasattr(module, "channels") and hasattr(module, "weight"):
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.5, 0.5)
    return net


def test_output_shape_and_range_of_every_architecture(model):
    x = torch.rand(2, 3, 64, 48) * 255
    assert model(x).shape == (2, 3, 64, 48)


def test_captured_stats_of_one_image_reproduce_instance_norm(model):
    x = torch.rand(1, 3, 64, 64) * 255
    capture = torch.empty(3, model.stats_channels)
    out = model(x, capture=capture)
    torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(model(x, stats=capture[1:]), model(x), rtol=1e-4, atol=1e-3)


def test_per_image_stats_equal_broadcast_stats(model):
    x = torch.rand(3, 3, 32, 32) * 255
    capture = torch.empty(3, model.stats_channels)
    model(x, capture=capture)
    stats = capture[1:]
    torch.testing.assert_close(model(x, stats=stats.expand(3, -1, -1)), model(x, stats=stats))
    other = stats.clone()
    other[1] *= 4
    mixed = model(x, stats=torch.stack([stats, other, stats]))
    assert not torch.allclose(mixed[1], model(x[1:2], stats=stats)[0])
    torch.testing.assert_close(mixed[2], model(x[2:3], stats=stats)[0])


def test_moments_of_tile_cores_merge_to_joint_capture(model):
    """Moments measured tile by tile and merged equal one joint measurement of all tiles."""
    grid = tiles.plan_grid(96, 96, tile=48, halo=16, overlap=4)
    pieces = tiles.cut(torch.rand(3, 96, 96) * 255, grid)
    joint = torch.empty(3, model.stats_channels)
    model(pieces, capture=joint, margin=grid.margin)
    stats = joint[1:]
    parts = []
    for tile in pieces:
        capture = torch.empty(3, model.stats_channels)
        model(tile[None], stats=stats, capture=capture, margin=grid.margin)
        parts.append(capture.numpy())
    merged = combine_moments(parts)
    np.testing.assert_allclose(merged[0], joint[0].numpy())
    # The first layer's statistics depend only on the input; later ones on the stats applied.
    first = slice(0, model.stats_channels // 10)
    np.testing.assert_allclose(moments_to_stats(merged)[:, first], stats[:, first].numpy(), rtol=1e-3, atol=1e-2)


@pytest.mark.data
@pytest.mark.parametrize("style", ["candy", "mosaic", "rain_princess", "udnie"])
def test_teachers_reproduce_reference_outputs(style, teacher, shared_data):
    """The official stylised amber.jpg: 27-32 dB for the right teacher, far lower for another."""
    content = np.asarray(Image.open(shared_data / "content" / "amber.jpg").convert("RGB"))
    engine = StyleEngine(teacher(style))
    out = engine.stylize(content[None], stats=None)[0].astype(np.float64)

    def psnr(reference: str) -> float:
        ref = np.asarray(Image.open(shared_data / "reference" / "johnson" / f"amber-{reference}.jpg").convert("RGB"))
        return 10 * np.log10(255**2 / np.mean((out - ref) ** 2))

    assert psnr(style.replace("_", "-")) > 26.5
    other = "udnie" if style != "udnie" else "candy"
    assert psnr(other) < 20


@pytest.mark.data
def test_every_teacher_loads_strictly(shared_data):
    for style in ("candy", "mosaic", "rain_princess", "udnie", "pointilism"):
        spec = resolve_model(style + "/teacher")
        net = spec.load()
        assert sum(p.numel() for p in net.parameters()) == 1_679_235


def _save(state: dict, path) -> str:
    torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("damage,message", [
    (lambda s: {("convA.weight" if k == "conv1.conv2d.weight" else k): v for k, v in s.items()},
     "missing keys: conv1.conv2d.weight; unexpected keys: convA.weight"),
    (lambda s: {k: v for k, v in s.items() if not k.startswith("res")}, r"missing keys: .* \(\+37 more\)"),
    (lambda s: {**s, "in1.weight": torch.zeros(31)}, r"in1.weight has shape \(31,\)"),
])
def test_model_files_that_do_not_fit_are_explained(tmp_path, damage, message):
    state = create_model("johnson").state_dict()
    path = _save(damage(state), tmp_path / "bad.pth")
    with pytest.raises(VrstyleError, match=message):
        resolve_model(path).load()


def test_truncated_and_foreign_model_files_are_explained(tmp_path):
    good = _save(create_model("johnson").state_dict(), tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(open(good, "rb").read()[:5000])
    with pytest.raises(VrstyleError, match="not a readable model file"):
        resolve_model(str(truncated)).load()
    listing = _save({"weights": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(VrstyleError, match="state dict of tensors"):
        load_weights(create_model("johnson"), listing)
    with pytest.raises(VrstyleError, match="does not exist"):
        resolve_model(str(tmp_path / "absent.pth"))


def test_unknown_style_lists_what_is_available():
    with pytest.raises(VrstyleError, match="unknown style 'vangogh'; available here"):
        resolve_model("vangogh")


def test_engine_crops_and_checks_stats():
    engine = StyleEngine(create_model("johnson", width=8, blocks=1))
    tiles_u8 = np.random.default_rng(0).integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    out = engine.stylize(tiles_u8, stats=None, crop=8)
    assert out.shape == (3, 24, 32, 3) and out.dtype == np.uint8
    with pytest.raises(VrstyleError, match="do not fit this model"):
        engine.stylize(tiles_u8, stats=np.zeros((2, 7), np.float32))
    with pytest.raises(VrstyleError, match="uint8 tiles"):
        engine.stylize(tiles_u8.astype(np.float32), stats=None)


def test_cuda_without_a_gpu_is_one_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(VrstyleError, match="CUDA is not available"):
        StyleEngine(create_model("johnson", width=8, blocks=1), device="cuda")
