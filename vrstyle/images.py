"""Reading and writing images, with one-line errors for files that are not images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vrstyle.errors import VrstyleError

Image.MAX_IMAGE_PIXELS = 400_000_000  # large photos are the point of tiling; beyond this is a decompression bomb


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB.

    Raises:
        VrstyleError: the file is missing, unreadable, or not a (complete) image.
    """
    path = Path(path)
    if not path.is_file():
        raise VrstyleError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise VrstyleError(f"{path}: not a readable image ({exc})") from None


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Save (H, W, 3) uint8 RGB; the format follows the suffix (PNG, JPEG, ...)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise VrstyleError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
        Image.fromarray(image).save(path, **options)
    except (ValueError, KeyError) as exc:
        raise VrstyleError(f"cannot write {path}: unknown image format {path.suffix!r} ({exc})") from None
    except OSError as exc:
        raise VrstyleError(f"cannot write {path}: {exc}") from None
