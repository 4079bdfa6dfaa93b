"""vrstyle paint: optimisation-based style transfer and deep dream, on tiny images in seconds."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from vrstyle.errors import VrstyleError
from vrstyle.paint import Dream, PaintConfig, paint, vgg_for
from vrstyle.train.losses import gram


def _image(shared_data, relative: str, side: int) -> torch.Tensor:
    from PIL import Image

    image = Image.open(shared_data / relative).convert("RGB")
    scale = side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float().contiguous()


@pytest.fixture(scope="module")
def pair(shared_data):
    return (_image(shared_data, "content/tubingen.jpg", 64),
            _image(shared_data, "styles/jcjohnson/starry_night.jpg", 64))


def test_painting_takes_on_the_style_and_keeps_the_content(shared_data, pair):
    torch.set_num_threads(1)
    content, style = pair
    config = PaintConfig(steps=40)
    vgg = vgg_for(shared_data / "vgg" / "vgg19_features.pth", config)
    image, history = paint(vgg, content, style, config, progress=False)
    assert image.shape == content.shape and 0 <= image.min() and image.max() <= 255
    assert history.style_drop() > 5, history.style[::10]
    assert history.content[-1] < history.content[0]  # from noise towards the photo
    again, _ = paint(vgg, content, style, config, progress=False)
    assert torch.equal(image, again)  # seeded


def test_dream_raises_its_layer_that_the_other_losses_leave_alone(shared_data, pair):
    torch.set_num_threads(1)
    content, style = pair
    plain = PaintConfig(steps=20, init="content")
    dreamy = PaintConfig(steps=20, init="content", dream=Dream("relu4_4", 7, 5.0))
    vgg = vgg_for(shared_data / "vgg" / "vgg19_features.pth", dreamy)
    with_dream, history = paint(vgg, content, style, dreamy, progress=False)
    without, _ = paint(vgg, content, style, plain, progress=False)
    assert history.dream[-1] > 2 * history.dream[0]

    def energy(image):
        return float(dict(zip(vgg.names, vgg(image)))["relu4_4"][:, 7].pow(2).mean())

    with torch.no_grad():
        assert energy(with_dream) > 2 * energy(without)


def test_paint_refuses_bad_layers_channels_and_images(shared_data, pair, tmp_path):
    with pytest.raises(VrstyleError, match="no layer 'relu9_1'"):
        Dream.parse("relu9_1", 1.0)
    with pytest.raises(VrstyleError, match="also a content or style layer"):
        PaintConfig(dream=Dream("relu4_2"))
    with pytest.raises(VrstyleError, match="no layer"):
        PaintConfig(style_layers=("conv1_1",))
    config = PaintConfig(steps=1, dream=Dream("relu4_4", 600))
    vgg = vgg_for(shared_data / "vgg" / "vgg19_features.pth", config)
    with pytest.raises(VrstyleError, match="512 channels"):
        paint(vgg, *pair, config, progress=False)
    with pytest.raises(VrstyleError, match="VGG19 needs at least 32 px"):
        paint(vgg, pair[0], pair[1], PaintConfig(octaves=3), progress=False)

    content = str(shared_data / "content" / "tubingen.jpg")
    style = str(shared_data / "styles" / "jcjohnson" / "starry_night.jpg")
    not_an_image = tmp_path / "art.jpg"
    not_an_image.write_text("no pixels here")
    for args, message in [((content, str(not_an_image), str(tmp_path / "o.png")), "not a readable image"),
                          ((content, style, str(tmp_path / "o.png"), "--dream", "relu9_1"), "no layer"),
                          ((content, style, str(tmp_path / "o.xyz")), "unknown image format"),
                          ((content, style, str(tmp_path / "no" / "o.png")), "does not exist")]:
        done = subprocess.run([sys.executable, "-m", "vrstyle.cli", "paint", *args, "--size", "48", "--steps", "1"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1


def test_gram_is_size_independent():
    features = torch.rand(1, 8, 16, 16)
    tiled = features.repeat(1, 1, 2, 2)
    assert torch.allclose(gram(features), gram(tiled), atol=1e-6)
