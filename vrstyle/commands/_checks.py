"""The checks every command runs on its paths and sizes before any work: argparse types, so a
mistake is one line and exit 2 while parsing, not after a run whose result has nowhere to go.

Writability is probed by creating (and removing) a file, since permission bits say nothing for
root or for read-only file systems such as ``/proc``; a folder that does not exist yet is not
made here (a failed command leaves no empty folders), its nearest existing parent is probed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from PIL import Image

from vrstyle import settings
from vrstyle.commands._common import argument_type

MEMORY_FRACTION = 0.5
"""Most of this machine's memory one stereo frame's working set may claim."""
FRAME_BYTES_PER_PIXEL = 4 * 8
"""Bytes a stereo frame costs per eye pixel while it is in flight: RGBA, in about eight copies
(source, ring or message, tiles, stitched, textures)."""


def _writable_folder(folder: Path) -> str | None:
    """Why files cannot be made in ``folder`` (or, if it does not exist, in its nearest parent), or None."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return f"no part of {folder} exists"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".vrstyle-probe-"):
            pass
    except OSError as exc:
        return f"cannot write in {probe} ({exc.strerror or exc})"
    return None


def input_file(text: str) -> Path:
    """An existing, readable file (not a folder)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path} does not exist")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{path} is not readable")
    return path


def output_file(text: str, suffixes: tuple[str, ...] = ()) -> Path:
    """A file that can be written: not a folder, its folder existing and writable, and (given
    ``suffixes``) one of those suffixes."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; name a file")
    if suffixes and path.suffix.lower() not in suffixes:
        raise argparse.ArgumentTypeError(f"{path}: expects a {' or '.join(suffixes)} file")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {path}: folder {path.parent} does not exist")
    problem = _writable_folder(path.parent)
    if problem:
        raise argparse.ArgumentTypeError(f"cannot write {path}: {problem}")
    return path


def npz_output(text: str) -> Path:
    """A writable ``.npz`` file."""
    return output_file(text, (".npz",))


def model_output(text: str) -> Path:
    """A writable ``.safetensors`` model file."""
    return output_file(text, (".safetensors",))


def onnx_output(text: str) -> Path:
    """A writable ``.onnx`` model file."""
    return output_file(text, (".onnx",))


def output_image(text: str) -> Path:
    """An image file that can be written, in a format Pillow writes (from the suffix).

    >>> output_image("out.xyz")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: out.xyz: unknown image format '.xyz' (use .png, .jpg, .webp, .tif or .bmp)
    """
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; name a file")
    Image.init()
    format_name = Image.registered_extensions().get(path.suffix.lower())
    if format_name is None or format_name not in Image.SAVE:
        raise argparse.ArgumentTypeError(f"{path}: unknown image format {path.suffix!r} "
                                         "(use .png, .jpg, .webp, .tif or .bmp)")
    return output_file(text)


def output_folder(text: str) -> Path:
    """A folder to write into: an existing writable folder, or one that can be made."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
    problem = _writable_folder(path)
    if problem:
        raise argparse.ArgumentTypeError(f"cannot write into {path}: {problem}")
    return path


def output_prefix(text: str) -> Path:
    """A path prefix whose ``.json``, ``.md`` and ``.png`` files can be written."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; name a prefix inside it, e.g. {path / 'results'}")
    return output_file(text)


def fits_memory(eye_shape: tuple[int, int], what: str) -> tuple[int, int]:
    """``eye_shape`` if a stereo frame of it fits this machine's memory, else one line saying why."""
    height, width = eye_shape
    needed = 2 * height * width * FRAME_BYTES_PER_PIXEL
    total = physical_memory()
    if total and needed > MEMORY_FRACTION * total:
        raise argparse.ArgumentTypeError(f"{what} {width}x{height} needs about {needed / 2**30:.0f} GiB for a "
                                         f"stereo frame; this machine has {total / 2**30:.0f} GiB")
    return eye_shape


def physical_memory() -> int | None:
    """Bytes of memory this machine has, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


_parse_eye = argument_type(settings.parse_eye)


def eye_size(text: str) -> tuple[str, tuple[int, int]]:
    """The type of ``--eye-size``: a headset preset or WIDTHxHEIGHT -> (name, (height, width)),
    refused if a stereo frame of it would not fit in memory."""
    name, shape = _parse_eye(text)
    return name, fits_memory(shape, "eye size")
