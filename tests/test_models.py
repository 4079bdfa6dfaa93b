"""Style networks: every registered architecture, the teachers, model files and the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import tiles
from vrstyle.errors import VrstyleError
from vrstyle.models import (
    ARCHITECTURES, STYLES, FrameNorm, NormContext, StyleEngine, create_model, frame_norm, resolve_model,
)
from vrstyle.models.binary import conv_class
from vrstyle.models.registry import load_weights
from vrstyle.models.transformer import ConvLayer, linear_weight
from vrstyle.normstats import combine_moments, moments_to_stats

EVERY_STUDENT_OPTION = {"planes": 2, "learned_scale": True, "rprelu": True, "bireal": True, "approx": True}
"""Beyond the registered defaults: every straight-through path a student can have."""


@pytest.fixture(autouse=True)
def _inference():
    """Gradients off in this module only (a module-level switch would leak into other tests)."""
    with torch.no_grad():
        yield


NORMALISED = sorted(arch for arch in ARCHITECTURES if create_model(arch).stats_channels)
"""Architectures with frame-normalisation layers, which the statistics tests below are about."""


@pytest.fixture(params=NORMALISED)
def model(request, random_weights) -> torch.nn.Module:
    torch.manual_seed(0)
    return random_weights(create_model(request.param))


@pytest.mark.parametrize("arch,config", [(arch, {}) for arch in sorted(ARCHITECTURES)]
                         + [("student", EVERY_STUDENT_OPTION), ("student", {"gated": True})],
                         ids=[*sorted(ARCHITECTURES), "student-every-option", "student-gated"])
@torch.enable_grad()
def test_every_architecture_is_finite_and_every_parameter_gets_a_gradient(arch, config, random_weights):
    """After timm's test_model_backward: a parameter without a gradient, or with an all-zero one,
    is a broken straight-through path (or dead weight); a non-finite one a broken estimator."""
    torch.manual_seed(0)
    net = random_weights(create_model(arch, **config)).train()
    out = net(torch.rand(2, 3, 32, 48) * 255)
    assert out.shape == (2, 3, 32, 48) and torch.isfinite(out).all()
    out.square().mean().backward()
    for name, parameter in net.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{name} gets no gradient"
            assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"
            assert parameter.grad.any(), f"{name} gets an all-zero gradient"


def test_a_gated_student_starts_as_its_teacher(random_weights):
    """Gated shortcuts start closed: with the teacher's weights and float layers the student
    computes the teacher's output; opened, they change it."""
    from vrstyle.models.students import StudentNet

    torch.manual_seed(0)
    teacher = random_weights(create_model("johnson", width=8, blocks=2))
    student = StudentNet(width=8, blocks=2, layers={}, gated=True).eval()
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    assert not unexpected and all(key.endswith("gates") for key in missing)
    x = torch.rand(1, 3, 32, 48) * 255
    torch.testing.assert_close(student(x), teacher(x))
    student.res1.gates.fill_(1)
    assert not torch.allclose(student(x), teacher(x), atol=1e-2)
    with pytest.raises(ValueError, match="not both"):
        StudentNet(width=8, blocks=1, bireal=True, gated=True)


def test_frame_norm_refuses_what_does_not_fit_in_one_line():
    x, ones, zeros = torch.rand(2, 4, 8, 8), torch.ones(4), torch.zeros(4)
    for kwargs, message in [({"x": x[0]}, r"expects \(N, C, H, W\)"), ({"weight": torch.ones(3)}, "4 channels"),
                            ({"stats": torch.zeros(2, 5)}, r"statistics of shape \(2, 5\)"),
                            ({"stats": torch.zeros(3, 2, 4)}, r"expects \(2, 4\) or \(2, 2, 4\)"),
                            ({"margin": 4}, "leaves no pixels of a 8x8 input")]:
        with pytest.raises(ValueError, match=message):
            frame_norm(**{"x": x, "weight": ones, "bias": zeros, **kwargs})


def test_frame_norm_measures_jointly_or_per_image():
    x = torch.rand(3, 4, 10, 12)
    _, joint = frame_norm(x, torch.ones(4), torch.zeros(4), margin=1, joint=True)
    _, per_image = frame_norm(x, torch.ones(4), torch.zeros(4), margin=1)
    assert joint.shape == (3, 4) and per_image.shape == (3, 3, 4) and joint[0, 0] == 3 * 8 * 10
    torch.testing.assert_close(torch.from_numpy(combine_moments(per_image.numpy())).float(), joint)
    layer = FrameNorm(4, offset=2, stride=2)
    capture = torch.zeros(3, 3, 8)
    layer(x, NormContext(capture=capture, margin=2))
    torch.testing.assert_close(capture[..., 2:6], per_image)
    assert not capture[..., :2].any() and not capture[..., 6:].any()  # only its own columns


def test_captured_stats_of_one_image_reproduce_instance_norm(model):
    x = torch.rand(1, 3, 64, 64) * 255
    capture = torch.empty(3, model.stats_channels)
    out = model(x, NormContext(capture=capture))
    torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(model(x, NormContext(capture[1:])), model(x), rtol=1e-4, atol=1e-3)


def test_per_image_stats_equal_broadcast_stats(model):
    x = torch.rand(3, 3, 32, 32) * 255
    capture = torch.empty(3, model.stats_channels)
    model(x, NormContext(capture=capture))
    stats = capture[1:]

    def run(x: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        return model(x, NormContext(stats))

    torch.testing.assert_close(run(x, stats.expand(3, -1, -1)), run(x, stats))
    other = stats.clone()
    other[1] *= 4
    mixed = run(x, torch.stack([stats, other, stats]))
    assert not torch.allclose(mixed[1], run(x[1:2], stats)[0])
    torch.testing.assert_close(mixed[2], run(x[2:3], stats)[0])


def test_moments_of_tile_cores_merge_to_joint_capture(model):
    """Moments measured tile by tile and merged equal one joint measurement of all tiles."""
    grid = tiles.plan_grid(96, 96, tile=48, halo=16, overlap=4)
    pieces = tiles.cut(torch.rand(3, 96, 96) * 255, grid)
    joint = torch.empty(3, model.stats_channels)
    model(pieces, NormContext(capture=joint, margin=grid.margin))
    stats = joint[1:]
    parts = []
    for tile in pieces:
        capture = torch.empty(3, model.stats_channels)
        model(tile[None], NormContext(stats, capture, grid.margin))
        parts.append(capture.numpy())
    merged = combine_moments(parts)
    np.testing.assert_allclose(merged[0], joint[0].numpy())
    # The first layer's statistics depend only on the input; later ones on the stats applied.
    first = slice(0, model.stats_channels // 10)
    np.testing.assert_allclose(moments_to_stats(merged)[:, first], stats[:, first].numpy(), rtol=1e-3, atol=1e-2)


@pytest.mark.data
@pytest.mark.parametrize("style", STYLES)
def test_teachers_reproduce_reference_outputs(style, teacher, shared_data):
    """The official stylised amber.jpg: 27-32 dB for the right teacher, far lower for another."""
    if not (shared_data / "reference" / "johnson" / f"amber-{style.replace('_', '-')}.jpg").is_file():
        pytest.skip(f"the reference outputs have no {style}")
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
@pytest.mark.parametrize("style", STYLES)
def test_every_teacher_loads_strictly(style, shared_data):
    net = resolve_model(f"{style}/teacher").load()
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


@pytest.mark.parametrize("kind", ["float", "int8", "binary_weights", "binary"])
def test_upsampling_layers_compute_upsample_pad_convolve(kind):
    """Folded into a low-resolution convolution where the layer is linear in its input; as written otherwise."""
    torch.manual_seed(0)
    layer = ConvLayer(8, 4, 3, upsample=True, conv=conv_class(kind)).eval()
    x = torch.randn(2, 8, 7, 10)
    expected = layer.conv2d(layer.pad(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")))
    assert (linear_weight(layer.conv2d) is None) == (kind == "binary")
    torch.testing.assert_close(layer(x), expected, atol=1e-4, rtol=1e-4)


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
