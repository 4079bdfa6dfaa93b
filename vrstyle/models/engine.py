"""A style network on a device, with uint8 RGB tiles in and out.

The one place where pixels become tensors and back, shared by in-process stylisation and
the workers, so both give bit-identical tiles.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vrstyle.errors import VrstyleError


def pick_device(name: str) -> torch.device:
    """``torch.device(name)``, or a :class:`VrstyleError` saying why it cannot be used here."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VrstyleError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VrstyleError(f"device {name} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise VrstyleError(f"device {name} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    elif device.type != "cpu":
        raise VrstyleError(f"unsupported device {name!r}; use cpu, cuda or cuda:N")
    return device


class StyleEngine:
    """Runs a style network on uint8 RGB tiles.

    Args:
        model: a network taking (N, 3, H, W) in 0..255 with ``forward(x, stats, capture,
            margin)`` and a ``stats_channels`` attribute (every registered architecture).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        half: run in fp16 (CUDA only).
        channels_last: NHWC memory layout (faster convolutions on GPUs).
    """

    def __init__(self, model: nn.Module, device: str = "cpu", half: bool = False, channels_last: bool = False):
        self.device = pick_device(device)
        if half and self.device.type != "cuda":
            raise VrstyleError("fp16 inference needs a CUDA device")
        self.dtype = torch.float16 if half else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, self.dtype, memory_format=self.memory_format)
        self.stats_channels: int = model.stats_channels

    def to_input(self, tiles: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) network input on the device."""
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[-1] != 3:
            raise VrstyleError(f"expected (N, H, W, 3) uint8 tiles, got {tiles.shape} {tiles.dtype}")
        if not tiles.flags.writeable:  # e.g. straight from PIL; torch wants writable memory
            tiles = tiles.copy()
        x = torch.from_numpy(np.ascontiguousarray(tiles)).to(self.device, non_blocking=True)
        return x.permute(0, 3, 1, 2).to(self.dtype, memory_format=self.memory_format)

    @torch.inference_mode()
    def measure(self, tiles: np.ndarray, margin: int) -> np.ndarray:
        """Normalisation moments (3, C) taken jointly over the tiles' cores (``margin`` px in).

        The tiles are normalised with their joint statistics layer by layer, exactly as the
        whole frame would be, so a sample of a frame's tiles measures the frame.
        """
        capture = torch.empty(3, self.stats_channels, device=self.device)
        self.model(self.to_input(tiles), capture=capture, margin=margin)
        return capture.cpu().numpy().astype(np.float64)

    @torch.inference_mode()
    def stylize(self, tiles: np.ndarray, stats: np.ndarray | None, crop: int = 0) -> np.ndarray:
        """Stylise uint8 tiles and cut ``crop`` px (the halo) off every side.

        Args:
            tiles: (N, H, W, 3) uint8.
            stats: (2, C) or (N, 2, C) statistics, or None for per-tile InstanceNorm.
            crop: pixels to drop on each side of the output.

        Returns:
            (N, H - 2 crop, W - 2 crop, 3) uint8.
        """
        given = None
        if stats is not None:
            given = torch.as_tensor(stats, dtype=torch.float32, device=self.device)
            if given.shape[-2:] != (2, self.stats_channels):
                raise VrstyleError(f"statistics of shape {tuple(given.shape)} do not fit this model "
                                   f"(expects (2, {self.stats_channels}))")
        height, width = tiles.shape[1:3]
        out = self.model(self.to_input(tiles), stats=given)
        out = out[:, :, crop:height - crop, crop:width - crop]
        return out.float().clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
