"""Shared fixtures: the shared data folder (tests needing it skip cleanly without it) and teachers."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from vrstyle.models.registry import shared_data_dir

TEACHER_STYLES = ("candy", "mosaic", "rain_princess", "udnie", "pointilism")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("needs the shared data folder (../shared/data or $VRSTYLE_DATA): absent here")
    return path


@functools.lru_cache(maxsize=None)
def _teacher(style: str):
    from vrstyle.models import load_model

    return load_model(f"{style}/teacher")


@pytest.fixture(scope="session")
def teacher(shared_data):
    """Loads a teacher by style name, once per session."""
    return _teacher


@pytest.fixture(scope="session")
def photo(shared_data) -> np.ndarray:
    """A real 1024x768 photo (Kodak 1, resized)."""
    from PIL import Image

    image = Image.open(shared_data / "photos" / "kodak24" / "kodim01.png").convert("RGB")
    return np.asarray(image.resize((1024, 768), Image.LANCZOS))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A small random Johnson net (width 8, one block) saved as a model file named ``tiny``.

    Norm layers get non-trivial affine parameters, so statistics visibly matter. Lets real
    workers start fast without the shared data.
    """
    import json

    import torch
    from safetensors.torch import save_file

    from vrstyle.models import create_model

    torch.manual_seed(0)
    net = create_model("johnson", width=8, blocks=1)
    with torch.no_grad():
        for module in net.modules():
            if hasattr(module, "channels") and hasattr(module, "weight"):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_file(net.state_dict(), str(path), metadata={"name": "tiny", "arch": "johnson",
                                                     "config": json.dumps({"width": 8, "blocks": 1})})
    return str(path)


@pytest.fixture(scope="session")
def tiny_engine(tiny_model):
    """The in-process engine for ``tiny_model``: the reference workers must match bit for bit."""
    from vrstyle.models import StyleEngine, resolve_model

    return StyleEngine(resolve_model(tiny_model).load())


@pytest.fixture(scope="session")
def cluster(tiny_model):
    """A real broker and two real CPU worker processes serving ``tiny``, shared by the session."""
    from vrstyle.transport.cluster import LocalCluster

    with LocalCluster([tiny_model], workers=2, heartbeat_s=0.5, threads=1) as running:
        yield running
