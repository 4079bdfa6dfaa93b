"""Shared fixtures: the shared data folder (tests needing it skip cleanly without it), teachers and
networks with random weights."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

from vrstyle.models.registry import shared_data_dir


def randomise_weights(net):
    """``net`` in eval mode with non-trivial norm affines, binary thresholds, plane weights and
    binary biases (fresh ones are identities and zeros, which hide mistakes), drawn from torch's
    global generator so that one ``torch.manual_seed`` fixes the whole network."""
    import torch

    from vrstyle.models.binary import BinaryConv2d, RSign
    from vrstyle.models.norm import FrameNorm

    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, FrameNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
            elif isinstance(module, RSign):
                module.threshold.normal_(0, 0.5)
                module.beta.uniform_(0.5, 1.5)
            elif isinstance(module, BinaryConv2d) and module.bias is not None:
                module.bias.normal_()
    return net.eval()


@pytest.fixture(scope="session")
def random_weights():
    """:func:`randomise_weights`, for tests and fixtures."""
    return randomise_weights


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
def gl_context():
    """A headless OpenGL core context (EGL surfaceless, Mesa llvmpipe here), current for the session."""
    from vrstyle.gl.context import GLError, HeadlessContext

    try:
        context = HeadlessContext()
    except GLError as exc:
        pytest.skip(f"needs a headless OpenGL context: {exc}")
    yield context
    context.close()


@pytest.fixture(scope="session")
def xvfb():
    """An Xvfb display on a free display number (Xvfb picks it): yields the DISPLAY value."""
    import shutil
    import subprocess

    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb (apt-get install xvfb): absent here")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
                              pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        pytest.skip("Xvfb did not start")
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, random_weights) -> str:
    """A small random Johnson net (width 8, one block) saved as a model file named ``tiny``.

    Norm layers get non-trivial affine parameters, so statistics visibly matter. Lets real
    workers start fast without the shared data.
    """
    import json

    import torch
    from safetensors.torch import save_file

    from vrstyle.models import create_model

    torch.manual_seed(0)
    net = random_weights(create_model("johnson", width=8, blocks=1))
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


@pytest.fixture(scope="session")
def xrenv():
    """Where Monado and the OpenXR client run (natively, or the chroot mounted with this checkout
    at /src) for the session; skips with the reason where neither is possible."""
    import xrenv as places

    place, reason = places.open_place()
    if place is None:
        pytest.skip(f"OpenXR runtime tests: {reason}")
    with place:
        missing = place.missing_client_modules()
        if missing:
            pytest.skip(f"OpenXR runtime tests: the chroot lacks client modules ({missing}): run .ci/xrroot.sh")
        yield place


@pytest.fixture(scope="session")
def monado(xrenv):
    """``monado-service`` (simulated headset, null compositor) running for the session."""
    import xrenv as places

    service = places.Monado(xrenv)
    try:
        yield service.start()
    finally:
        service.remove()
