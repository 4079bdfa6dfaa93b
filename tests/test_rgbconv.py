"""The compiled RGB tail (a network's 9x9 convolution to 3 channels) against PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tiles
from vrstyle.kernels.rgbconv import rgb_conv9
from vrstyle.models import StyleEngine
from vrstyle.models.fast import RGBTailConv, is_rgb_tail, use_compiled_tail
from vrstyle.models.transformer import ConvLayer, TransformerNet


@pytest.mark.parametrize("batch,channels,height,width", [(1, 32, 20, 20), (2, 8, 10, 31), (3, 5, 17, 11)])
def test_rgb_conv9_equals_conv2d(batch, channels, height, width):
    rng = np.random.default_rng(batch)
    x = rng.uniform(0, 4, (batch, channels, height, width)).astype(np.float32)
    weight = rng.normal(0, 0.1, (3, channels, 9, 9)).astype(np.float32)
    bias = rng.normal(0, 1, 3).astype(np.float32)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias)).numpy()
    out = rgb_conv9(x, weight, bias)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    # every pixel is summed in the same order, in any batch or crop: tiles equal the whole image
    np.testing.assert_array_equal(rgb_conv9(x[-1:, :, 1:, 2:], weight, bias), out[-1:, :, 1:, 2:])


@pytest.mark.parametrize("x,weight,bias,message", [
    ((1, 4, 12, 12), (3, 4, 9, 9), (3,), None),
    ((1, 4, 8, 12), (3, 4, 9, 9), (3,), "H, W >= 9"),
    ((4, 12, 12), (3, 4, 9, 9), (3,), r"\(N, C, H, W\)"),
    ((1, 4, 12, 12), (3, 5, 9, 9), (3,), r"a \(3, 4, 9, 9\) kernel"),
    ((1, 4, 12, 12), (4, 4, 9, 9), (4,), r"a \(3, 4, 9, 9\) kernel"),
])
def test_rgb_conv9_given_bad_shapes_raises_one_clear_error(x, weight, bias, message):
    arrays = [np.zeros(shape, np.float32) for shape in (x, weight, bias)]
    if message is None:  # the well-formed case, with float64 input
        arrays[0] = arrays[0].astype(np.float64)
        message = "float32"
    with pytest.raises(ValueError, match=message):
        rgb_conv9(*arrays)


def test_only_the_rgb_tail_is_swapped(random_weights):
    torch.manual_seed(0)
    net = random_weights(TransformerNet(width=8, blocks=1))
    assert [name for name, m in net.named_modules() if is_rgb_tail(m)] == ["deconv3"]
    assert not is_rgb_tail(ConvLayer(8, 3, 9, stride=2)) and not is_rgb_tail(ConvLayer(8, 4, 9))
    with pytest.raises(ValueError, match="9x9 convolution to 3 channels"):
        RGBTailConv(net.conv1)
    x = torch.rand(2, 3, 36, 44) * 255
    with torch.no_grad():
        expected = net(x)
        compiled = use_compiled_tail(net)
        assert isinstance(compiled.deconv3.conv2d, RGBTailConv)
        torch.testing.assert_close(compiled(x), expected, rtol=1e-5, atol=1e-3)


def test_engine_fast_path_stays_within_rounding_of_the_reference_at_image_borders(random_weights):
    """Tiles reflecting at the image's borders inside the compiled tail, as PyTorch's does."""
    torch.manual_seed(1)
    net = random_weights(TransformerNet(width=8, blocks=1))
    with torch.no_grad():
        net.deconv3.conv2d.weight.mul_(150)
        net.deconv3.conv2d.bias.fill_(128)
    fast, reference = StyleEngine(net), StyleEngine(net, reference=True)
    assert isinstance(fast.model.deconv3.conv2d, RGBTailConv) and type(reference.model.deconv3.conv2d) is nn.Conv2d
    image = np.random.default_rng(2).integers(0, 256, (97, 130, 3), dtype=np.uint8)
    grid = tiles.plan_grid(97, 130, 48, 32, 8)
    pieces, bounds = tiles.cut(image, grid), grid.bounds()
    stats = reference.measure(pieces, grid.margin)[1:].astype(np.float32)
    difference = np.abs(fast.stylize(pieces, stats, grid.halo, bounds).astype(int)
                        - reference.stylize(pieces, stats, grid.halo, bounds))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-2, (difference.max(), difference.mean())
