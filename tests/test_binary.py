"""Binary layers, bit packing, the compiled popcount kernels and calibration's building blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vrstyle.kernels import PackingError, pack_signs, unpack_signs
from vrstyle.kernels import bconv
from vrstyle.models.fast import PackedConvLayer, use_fast_kernels
from vrstyle.models.transformer import ConvLayer
from vrstyle.models import create_model
from vrstyle.models.binary import BinaryConv2d, Int8Conv2d, RSign, binarize_weights, quantize_int8, ste_sign
from vrstyle.models.students import StudentNet
from vrstyle.train.calibrate import fit_thresholds, gptq, refine_signs


@torch.enable_grad()
def test_ste_sign_forward_and_clipped_gradient():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    y = ste_sign(x)
    y.sum().backward()
    assert y.tolist() == [-1, -1, 1, 1, 1]
    assert x.grad.tolist() == [0, 1, 1, 1, 0]
    x.grad = None
    ste_sign(x, approx=True).sum().backward()
    assert x.grad.tolist() == [0, 1, 2, 1, 0]


def test_weight_binarization_uses_mean_absolute_value_per_output_channel():
    w = torch.randn(4, 3, 3, 3)
    q = binarize_weights(w)
    assert torch.equal(q.abs(), w.abs().mean(dim=(1, 2, 3))[:, None, None, None].expand_as(w))
    assert torch.equal(torch.sign(q), torch.where(w >= 0, 1.0, -1.0))


def test_int8_fake_quantization_round_trips_stored_values():
    conv = Int8Conv2d(8, 4, 3)
    q = quantize_int8(conv.weight, conv.scale)
    steps = q / conv.scale[:, None, None, None]
    torch.testing.assert_close(steps, steps.round(), atol=1e-4, rtol=0)
    assert steps.round().abs().amax() <= 127
    torch.testing.assert_close(quantize_int8(q, conv.scale), q)


def test_rsign_planes_are_a_thermometer_code():
    act = RSign(2, planes=3)
    with torch.no_grad():
        act.threshold.copy_(torch.tensor([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]]))
    planes = act(torch.tensor([-2.0, 0.5]).view(1, 2, 1, 1))
    assert planes[:, 0, :, 0, 0].T.tolist() == [[-1, -1, -1], [1, 1, -1]]


def test_sign_packing_round_trips_and_rejects_wrong_packing():
    values = torch.randn(5, 7, 3, 3).numpy()
    bits = pack_signs(values)
    assert bits.shape == (5, 8) and bits.dtype == np.uint8
    np.testing.assert_array_equal(unpack_signs(bits, values.shape), np.where(values >= 0, 1, -1))
    with pytest.raises(PackingError, match="cannot hold"):
        unpack_signs(bits[:, :-1], values.shape)
    with pytest.raises(PackingError, match="uint8"):
        unpack_signs(bits.astype(np.int16), values.shape)
    spoiled = bits.copy()
    spoiled[:, -1] |= 0x80  # 63 signs use 7 bits of the last byte
    with pytest.raises(PackingError, match="padding bits"):
        unpack_signs(spoiled, values.shape)


def binary_layer(channels: int, out: int, stride: int, planes: int, upsample: bool = False) -> ConvLayer:
    return ConvLayer(channels, out, 3, stride, upsample=upsample,
                     conv=lambda i, o, k, s: BinaryConv2d(i, o, k, s, planes=planes))


@pytest.mark.parametrize("channels,out,planes,stride,size", [
    (128, 128, 1, 1, (17, 19)), (128, 128, 2, 1, (9, 33)), (70, 33, 2, 1, (5, 7)), (13, 5, 3, 2, (11, 8)),
    (64, 64, 1, 2, (16, 16)), (200, 7, 1, 1, (3, 4)),
])
def test_compiled_popcount_equals_float_simulation_exactly(channels, out, planes, stride, size, random_weights):
    """Packing with thresholds and reflection padding, AND + popcount, fp32 epilogue: bit for bit."""
    torch.manual_seed(channels + planes)
    layer = random_weights(binary_layer(channels, out, stride, planes))
    x = torch.randn(2, channels, *size) * 3
    with torch.no_grad():
        expected = layer(x)
        packed = PackedConvLayer(layer)(x)
    assert torch.equal(packed, expected)
    assert expected.abs().max() > 1  # it computed something


def test_packed_kernels_count_their_bits():
    signs = np.where(np.random.default_rng(0).random((5, 70, 3, 3)) < 0.5, -1.0, 1.0)
    words, ones = bconv.pack_kernels(signs)
    assert words.shape == (1, 18, 16) and words.dtype == np.uint64
    np.testing.assert_array_equal(ones, (signs > 0).reshape(5, -1).sum(1))
    per_output = np.ascontiguousarray(words[0].T)  # (16 outputs, 18 words: tap by tap, 2 words a tap)
    bits = np.unpackbits(per_output.view(np.uint8), axis=-1, bitorder="little").reshape(16, 3, 3, 128)
    np.testing.assert_array_equal(bits[:5, ..., :70], np.moveaxis(signs > 0, 1, -1))
    assert not bits[:5, ..., 70:].any() and not bits[5:].any()  # padding counts in no popcount


def test_whole_student_on_popcount_equals_float_simulation(random_weights):
    """Reflection padding of ±1 planes stays ±1: the whole network agrees bit for bit."""
    torch.manual_seed(1)
    net = random_weights(StudentNet(width=8, blocks=2, planes=2))
    x = torch.rand(1, 3, 40, 36) * 255
    with torch.no_grad():
        expected = net(x)
        packed = use_fast_kernels(net)(x)
    assert sum(isinstance(m, PackedConvLayer) for m in net.modules()) == 4
    assert torch.equal(packed, expected)


def test_weight_bases_start_from_a_float_weight_and_run_on_popcount_bit_for_bit(random_weights, tmp_path):
    """Two bases: a teacher's weight loads as the weight and the error its signs leave, the
    pair approximates it better than one base, and the packed twin and the model file agree."""
    from vrstyle.models.packed import save_model
    from vrstyle.models.registry import load_weights

    torch.manual_seed(2)
    teacher = random_weights(create_model("johnson", width=8, blocks=2))
    config = {"width": 8, "blocks": 2, "planes": 2, "weight_bases": 2}
    net = create_model("student", **config)
    net.load_state_dict(teacher.state_dict(), strict=False)
    conv, original = net.res1.conv1.conv2d, teacher.res1.conv1.conv2d
    assert conv.weight.shape[0] == 2 * original.weight.shape[0] and torch.equal(conv.weight[:32], original.weight)
    one = binarize_weights(original.weight)
    two = sum(binarize_weights(w) for w in conv.weight.detach().chunk(2))
    assert (two - original.weight).norm() < 0.7 * (one - original.weight).norm()
    x = torch.rand(1, 3, 40, 36) * 255
    with torch.no_grad():
        expected = net.eval()(x)
        path = tmp_path / "bases.safetensors"
        assert save_model(net, path, "bases", "student", config) > 0
        again = create_model("student", **config)
        load_weights(again, path)  # weights as bits, the rest fp16
        reloaded = again.eval()(x)
        assert (reloaded - expected).abs().mean() < 1.0
        assert torch.equal(use_fast_kernels(net)(x), expected)
        assert torch.equal(use_fast_kernels(again)(x), reloaded)


@pytest.mark.parametrize("shape,message", [((1, 12, 8, 8), r"expected \(N, 16, H, W\)"),
                                           ((1, 16, 1, 5), "too small for reflection padding"),
                                           ((16, 8, 8), r"expected \(N, 16, H, W\)")])
def test_kernel_given_bad_shapes_raises_one_clear_error(shape, message):
    layer = PackedConvLayer(binary_layer(16, 8, 1, 1))
    with pytest.raises(ValueError, match=message):
        layer(torch.zeros(shape))


def test_generic_fallback_path_is_bit_exact():
    """Forced onto numba's generic x86-64 target (no popcount instruction), in a fresh process."""
    import os
    import subprocess
    import sys

    code = ("import torch; from tests.conftest import randomise_weights; from tests.test_binary import binary_layer; "
            "from vrstyle.models.fast import PackedConvLayer; from vrstyle.kernels.bconv import kernel_path; "
            "torch.manual_seed(0); layer = randomise_weights(binary_layer(96, 40, 1, 2)); "
            "x = torch.randn(1, 96, 9, 11); "
            "print(kernel_path(), torch.equal(PackedConvLayer(layer)(x), layer(x)))")
    env = {**os.environ, "NUMBA_CPU_NAME": "generic", "NUMBA_CACHE_DIR": str(Path(__file__).parent / ".."
                                                                              / ".pytest_cache" / "numba-generic")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=Path(__file__).parents[1], timeout=300)
    assert result.stdout.split() == ["generic", "True"], result.stderr[-2000:]


def test_student_layer_kinds_follow_the_configuration():
    net = create_model("student", layers={"body": "binary_weights", "deconv2": "int8"})
    assert net.res3.conv2.conv2d.act is None and isinstance(net.deconv2.conv2d, Int8Conv2d)
    assert type(net.conv3.conv2d) is torch.nn.Conv2d
    shipped = create_model("student")
    assert shipped.res1.conv1.conv2d.planes == 1 and shipped.deconv1.conv2d.act is None


@pytest.mark.parametrize("config,message", [
    ({"layers": {"body": "ternary"}}, "unknown kind 'ternary'"),
    ({"layers": {"head": "binary"}}, "unknown layer groups"),
    ({"planes": 0}, "planes must be >= 1"),
    ({"weight_bases": 0}, "weight bases must be >= 1"),
])
def test_bad_student_configurations_are_one_line_errors(config, message):
    from vrstyle.errors import VrstyleError

    with pytest.raises(VrstyleError, match=message):
        create_model("student", **config)


def test_thresholds_of_one_plane_split_two_clusters():
    samples = torch.cat([torch.randn(1, 500) * 0.1 - 2, torch.randn(1, 500) * 0.1 + 4], dim=1)
    thresholds, spread = fit_thresholds(samples, planes=1)
    assert thresholds.shape == (1, 1) and abs(thresholds.item() - 1.0) < 0.1
    assert abs(spread.item() - 3.0) < 0.1


def test_gptq_and_sign_refinement_beat_plain_signs():
    """Error compensation lowers the objective tr((W - Q) H (W - Q)^T) below sign(W) * mean|W|."""
    torch.manual_seed(0)
    x = torch.randn(64, 2000) + torch.randn(64, 1) * torch.randn(1, 2000)  # correlated inputs
    h = (x @ x.T).double()
    w = torch.randn(8, 64).double()

    def objective(q):
        return float(((w - q) @ h * (w - q)).sum())

    scale = w.abs().mean(dim=1, keepdim=True)
    plain = torch.sign(w) * scale
    q = gptq(w, h, lambda col: torch.where(col >= 0, 1.0, -1.0).double() * scale[:, 0])
    signs, best = refine_signs(w, h, torch.sign(q))
    refined = signs.double() * best.double()[:, None]
    assert objective(q) < objective(plain)
    assert objective(refined) <= objective(q)


@pytest.fixture
def tiny_teacher(random_weights) -> torch.nn.Module:
    torch.manual_seed(3)
    return random_weights(create_model("johnson", width=8, blocks=2))


def _images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(3, 3, 12, 16, generator=generator), scale_factor=4,
                                             mode="bilinear")
    return smooth * 255


def test_calibration_reproduces_a_float_student_and_fits_a_binary_one(tiny_teacher):
    from vrstyle.train.calibrate import calibrate, relative_error

    teacher, images = tiny_teacher, _images()
    with torch.no_grad():
        reference = teacher(images)
    same = StudentNet(width=8, blocks=2, layers={})
    calibrate(same, teacher, images, positions=4000)
    binary = StudentNet(width=8, blocks=2, planes=2)
    calibrate(binary, teacher, images, positions=4000)
    plain = StudentNet(width=8, blocks=2, planes=2)
    plain.load_state_dict(teacher.state_dict(), strict=False)
    with torch.no_grad():
        assert relative_error(same(images), reference) < 0.05
        fitted = relative_error(binary(images), reference)
        assert fitted < 0.5 * relative_error(plain.eval()(images), reference)  # far better than a copy


def test_calibration_of_a_narrower_student_selects_channels(tiny_teacher):
    from vrstyle.train.calibrate import calibrate, relative_error, select_channels

    teacher, images = tiny_teacher, _images()
    keep = select_channels(teacher, 4)
    assert len(keep["stream"]) == 16 and len(keep["in1"]) == 4 and keep["stream"].unique().numel() == 16
    narrow = StudentNet(width=4, blocks=2, layers={}).eval()
    with torch.no_grad():
        untrained = relative_error(narrow(images), teacher(images))
    calibrate(narrow, teacher, images, positions=4000)
    with torch.no_grad():
        assert relative_error(narrow(images), teacher(images)) < min(0.9, untrained / 2)


def test_kernels_import_neither_torch_nor_the_models():
    """kernels are array code; models wrap them (no import cycle between the two)."""
    import subprocess
    import sys

    code = "import sys, vrstyle.kernels.bconv, vrstyle.kernels.rgbconv; print(sorted(m for m in ('torch', 'vrstyle.models') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr[-1000:]
