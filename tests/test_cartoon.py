"""The cartoon teacher (White-box generator + guided filter), its padding, pruning and distillation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from vrstyle.models import load_model
from vrstyle.models.cartoon import CartoonNet, SameConv, box_mean, guided_filter, pruned_state


def test_guided_filter_with_a_flat_guide_is_a_double_box_mean():
    """Where the guide has no edges the local linear model has slope 0: the output is the mean
    of the windows' means of the source."""
    src = torch.rand(1, 3, 12, 10)
    out = guided_filter(torch.full_like(src, 0.3), src, radius=1, eps=5e-3)
    torch.testing.assert_close(out, box_mean(box_mean(src, 1), 1))
    with pytest.raises(ValueError, match="differ in shape"):
        guided_filter(src[:, :1], src)


def test_guided_filter_keeps_the_guides_edges():
    """A noisy step filtered with the clean step as guide keeps the step and loses noise."""
    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1
    noisy = step + 0.05 * torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    out = guided_filter(step, noisy, radius=2, eps=1e-2)
    assert (out - step).abs().mean() < 0.5 * (noisy - step).abs().mean()
    assert out[..., 7].mean() < 0.2 and out[..., 8].mean() > 0.8


def test_same_convolution_pads_like_tensorflow():
    """TensorFlow's 'SAME' stride-2 convolution of an even input pads only bottom and right, so
    output (0, 0) sees input (0, 0) at the kernel's top-left tap (symmetric padding would see 0)."""
    conv = SameConv(1, 1, 3, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1
    x = torch.arange(1, 65, dtype=torch.float32).reshape(1, 1, 8, 8)
    out = conv(x)
    assert out.shape == (1, 1, 4, 4)
    torch.testing.assert_close(out[0, 0], x[0, 0, ::2, ::2])


@pytest.mark.parametrize("height,width", [(32, 48), (21, 37)])
def test_any_size_comes_back_the_same_size(height, width):
    torch.manual_seed(0)
    net = CartoonNet(width=4, blocks=1, refine=True).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, height, width) * 255)
    assert out.shape == (2, 3, height, width) and out.min() >= 0 and out.max() <= 255


def test_a_student_as_wide_as_its_teacher_is_pruned_to_the_teacher():
    """Pruning keeps whole channel groups: at full width it is the teacher, channel for channel;
    narrower, it loads strictly; wider is refused."""
    torch.manual_seed(0)
    teacher = CartoonNet(width=8, blocks=2).eval()
    same = CartoonNet(width=8, blocks=2).eval()
    same.load_state_dict(pruned_state(teacher.state_dict(), same))
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        torch.testing.assert_close(same(x), teacher(x))
        narrow = CartoonNet(width=4, blocks=1).eval()
        narrow.load_state_dict(pruned_state(teacher.state_dict(), narrow), strict=True)
        assert not torch.allclose(narrow(x), teacher(x), atol=1)
    with pytest.raises(ValueError, match="cannot be cut"):
        pruned_state(teacher.state_dict(), CartoonNet(width=16, blocks=1))


def test_pruning_keeps_the_channels_with_the_largest_weights():
    torch.manual_seed(0)
    teacher = CartoonNet(width=4, blocks=1)
    state = teacher.state_dict()
    with torch.no_grad():
        state["Conv_8.weight"][2] *= 100  # a4, the group only Conv_8 writes: channel 2 must survive
    narrow = CartoonNet(width=1, blocks=1)
    pruned = pruned_state(state, narrow)
    torch.testing.assert_close(pruned["Conv_8.bias"], state["Conv_8.bias"][2:3])
    torch.testing.assert_close(pruned["Conv_9.weight"], state["Conv_9.weight"][:, 2:3])


@pytest.fixture(scope="module")
def cartoon_teacher(shared_data):
    return load_model("cartoon/teacher")


def test_the_teacher_cartoonises_and_its_filter_smooths(cartoon_teacher, photo):
    """The shared teacher loads strictly, keeps the photo's layout (its output is far closer to
    the photo than to a flat grey) and its guided filter removes fine texture: lower total
    variation than the generator's raw output."""
    x = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float()[..., :256, :384]
    raw = CartoonNet(refine=False).eval()
    raw.load_state_dict(cartoon_teacher.state_dict())
    with torch.no_grad():
        refined, unrefined = cartoon_teacher(x), raw(x).clamp(0, 255)

    def variation(image: torch.Tensor) -> float:
        rows, cols = image[..., 1:, :] - image[..., :-1, :], image[..., 1:] - image[..., :-1]
        return float(rows.abs().mean() + cols.abs().mean())

    assert variation(refined) < 0.9 * variation(unrefined)
    assert (refined - x).abs().mean() < 0.5 * (x - 128).abs().mean()
    assert not torch.allclose(refined, x, atol=8)


def test_distill_prunes_a_cartoon_student_and_trains_it(cartoon_teacher, tmp_path):
    """The one-command recipe at a tiny budget: prune, two steps, export; the file stylises."""
    out = tmp_path / "cartoon.safetensors"
    command = [sys.executable, "-m", "vrstyle.cli", "distill", "--teacher", "cartoon", "--student", "cartoon",
               "--config", '{"width": 8, "blocks": 1}', "--init", "prune", "--steps", "2", "--crop", "64",
               "--batch", "1", "--threads", "1", "--run", str(tmp_path / "run"), "--output", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    student = load_model(str(out))
    assert isinstance(student, CartoonNet) and (student.width, student.blocks, student.refine) == (8, 1, False)
    assert np.loadtxt(tmp_path / "run" / "log.csv", delimiter=",", skiprows=1).shape[0] == 2


def test_prune_refuses_a_student_that_is_not_a_cartoon_network(cartoon_teacher, tmp_path):
    result = subprocess.run([sys.executable, "-m", "vrstyle.cli", "distill", "--teacher", "candy", "--init", "prune",
                             "--steps", "1", "--run", str(tmp_path / "run")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0 and "init 'prune' cuts a cartoon student" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_network_without_normalisation_streams_through_real_workers(tmp_path):
    """A style with no statistics (the cartoon generator) joins a broker, streams frame after
    frame through the pipeline (no statistics are sent) and stylises a tiled image through it."""
    from safetensors.torch import save_file

    from vrstyle.pipeline import FramePipeline
    from vrstyle.stylize import stylize_image
    from vrstyle.transport.cluster import LocalCluster
    import tiles

    torch.manual_seed(0)
    path = tmp_path / "toon.safetensors"
    save_file(CartoonNet(width=4, blocks=1).state_dict(), str(path),
              metadata={"name": "toon", "arch": "cartoon", "config": '{"width": 4, "blocks": 1}'})
    eyes = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), np.uint8)
    with LocalCluster([str(path)], workers=1, heartbeat_s=0.5, threads=1) as cluster, cluster.client() as client:
        pipe = FramePipeline.plan(client, 64, 96, "toon", tile=32, halo=8, overlap=4, deadline_s=None)
        first, second = pipe.process(eyes), pipe.process(eyes)
        assert first.complete and second.complete and pipe.stats is None
        np.testing.assert_array_equal(first.tiles, second.tiles)
        image = stylize_image(client, eyes[0], tiles.plan_grid(64, 96, tile=32, halo=8, overlap=4), style="toon")
        assert image.shape == (64, 96, 3)
