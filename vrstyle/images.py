"""Reading and writing images, with one-line errors for files that are not images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
            return to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise VrstyleError(f"{path}: not a readable image ({exc})") from None


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow image as (H, W, 3) uint8 RGB, its range kept: 16-bit and 32-bit integer
    greyscale scaled from 0..65535, float greyscale from 0..1 (or clipped to 0..255 when its
    values are larger), and transparency composited over white.

    >>> to_rgb(Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16)))[0, :, 0].tolist()
    [0, 128, 255]
    >>> to_rgb(Image.new("LA", (1, 1), (0, 0)))[0, 0].tolist()  # black, fully transparent
    [255, 255, 255]
    """
    if image.mode.startswith("I") or image.mode == "F":  # "I;16", "I;16B", "I", "F": wide greyscale
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            values = values * 255.0 if values.max(initial=0.0) <= 1.0 else values
        elif image.mode.startswith("I;16") or values.max(initial=0.0) > 255:
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


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
