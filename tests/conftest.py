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
