"""Photos for distillation and evaluation from the shared data folder.

Training uses BSDS500 train+val (random crops and flips); evaluation holds out Kodak24 and
BSDS500 test, as the data README prescribes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vrstyle.errors import VrstyleError
from vrstyle.images import read_rgb
from vrstyle.models.registry import shared_data_dir
from vrstyle.models.transformer import STRIDE

TRAIN_SETS = ("bsds500/train", "bsds500/val")
EVAL_SETS = ("kodak24", "bsds500/test")
SUFFIXES = (".jpg", ".jpeg", ".png")


def data_dir() -> Path:
    """The shared data folder, or a :class:`VrstyleError` saying how to point at it."""
    path = shared_data_dir()
    if path is None:
        raise VrstyleError("the shared data folder (photos, teachers, VGG) is not here; set VRSTYLE_DATA")
    return path


def photo_paths(sets: tuple[str, ...], limit: int | None = None) -> list[Path]:
    """Sorted photo files of ``photos/<set>`` for each set, the first ``limit`` of each set."""
    paths = []
    for name in sets:
        folder = data_dir() / "photos" / name
        if not folder.is_dir():
            raise VrstyleError(f"photo set {name} not found in the shared data folder ({folder.name} missing)")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
        paths += found[:limit]
    return paths


def load_photo(path: Path) -> torch.Tensor:
    """(3, H, W) float 0..255, cropped to multiples of the network stride."""
    image = read_rgb(str(path))
    h, w = (s - s % STRIDE for s in image.shape[:2])
    return torch.from_numpy(image[:h, :w].copy()).permute(2, 0, 1).float()  # PIL arrays are read-only


def load_batch(paths: list[Path]) -> torch.Tensor:
    """Photos of one size as (N, 3, H, W); landscape-rotates portrait ones so they stack."""
    images = [load_photo(p) for p in paths]
    images = [im.transpose(1, 2) if im.shape[1] > im.shape[2] else im for im in images]
    h = min(im.shape[1] for im in images)
    w = min(im.shape[2] for im in images)
    return torch.stack([im[:, :h, :w] for im in images])


class RandomCrops:
    """An endless stream of random ``crop`` px crops of photos, flipped at random, seeded.

    Args:
        paths: photo files (loaded once, kept in memory as uint8).
        crop: crop side, a multiple of the network stride.
        seed: random seed.
    """

    def __init__(self, paths: list[Path], crop: int, seed: int = 0):
        if crop % STRIDE or crop < STRIDE:
            raise VrstyleError(f"crop must be a positive multiple of {STRIDE}, got {crop}")
        self.images = [load_photo(p).to(torch.uint8) for p in paths]
        small = [p.name for p, im in zip(paths, self.images) if min(im.shape[1:]) < crop]
        if small:
            raise VrstyleError(f"crop {crop} px is larger than photo {small[0]}")
        self.crop = crop
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self, size: int) -> torch.Tensor:
        """(size, 3, crop, crop) float 0..255."""
        out = []
        for _ in range(size):
            image = self.images[int(torch.randint(len(self.images), (1,), generator=self.generator))]
            y = int(torch.randint(image.shape[1] - self.crop + 1, (1,), generator=self.generator))
            x = int(torch.randint(image.shape[2] - self.crop + 1, (1,), generator=self.generator))
            piece = image[:, y:y + self.crop, x:x + self.crop]
            if torch.rand(1, generator=self.generator) < 0.5:
                piece = piece.flip(2)
            out.append(piece)
        return torch.stack(out).float()

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def restore(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
