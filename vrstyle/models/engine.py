"""A style network on a device, with uint8 RGB tiles in and out.

The one place where pixels become tensors and back, shared by in-process stylisation and
the workers, so both give bit-identical tiles.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from vrstyle.errors import VrstyleError
from vrstyle.models.fast import use_compiled_tail, use_fast_kernels
from vrstyle.models.borders import Bounds, as_bounds, check_bounds, crosses
from vrstyle.models.norm import MeasuredEnough, NormContext
from vrstyle.models.transformer import STRIDE


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
        model: a network taking (N, 3, H, W) in 0..255 with ``forward(x, norm)`` (``norm`` a
            :class:`~vrstyle.models.norm.NormContext`) and a ``stats_channels`` attribute
            (every registered architecture).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        half: run in fp16 (CUDA only).
        channels_last: NHWC memory layout (faster convolutions on GPUs).
        compile: run the tile path with given statistics (network, crop, rounding to uint8)
            through ``torch.compile(mode="reduce-overhead", dynamic=False)``: CUDA graphs for
            fixed tile shapes, batches padded to a power of two so a handful of graphs cover
            every batch size; :meth:`warmup` builds them ahead of time. A stream's first frame
            (no statistics yet), batches with an image border inside a tile (their per-tile
            reflections) and :meth:`stylize` stay eager.
        reference: on a CPU, keep PyTorch's layers: the float simulation of binary layers
            instead of the popcount kernels (bit-identical and faster) and PyTorch's RGB tail
            instead of the compiled one (equal up to float rounding; :mod:`vrstyle.models.fast`).
    """

    def __init__(self, model: nn.Module, device: str = "cpu", half: bool = False, channels_last: bool = False,
                 compile: bool = False, reference: bool = False):
        self.device = pick_device(device)
        if half and self.device.type != "cuda":
            raise VrstyleError("fp16 inference needs a CUDA device")
        self.dtype = torch.float16 if half else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, self.dtype, memory_format=self.memory_format)
        self.fast = self.device.type == "cpu" and not reference
        if self.fast:
            self.model = use_compiled_tail(use_fast_kernels(copy.deepcopy(self.model)))
        self.stats_channels: int = model.stats_channels
        self._compiled = torch.compile(self._run, mode="reduce-overhead", dynamic=False) if compile else None

    def to_input(self, tiles: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3 or 4) uint8 -> (N, 3, H, W) network input on the device (alpha dropped)."""
        return self._to_network(self._upload(tiles))

    def _upload(self, tiles: np.ndarray) -> torch.Tensor:
        """Pixels to the device as they are: RGBA stays RGBA, since dropping alpha on the
        device (in the conversion to float) is free and on the CPU a slow strided copy."""
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[-1] not in (3, 4):
            raise VrstyleError(f"expected (N, H, W, 3 or 4) uint8 tiles, got {tiles.shape} {tiles.dtype}")
        if not tiles.flags.writeable:  # e.g. straight from PIL or a socket; torch wants writable memory
            tiles = tiles.copy()
        return torch.from_numpy(np.ascontiguousarray(tiles)).to(self.device, non_blocking=True)

    def _to_network(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels[..., :3].permute(0, 3, 1, 2).to(self.dtype, memory_format=self.memory_format)

    def _given(self, stats: np.ndarray | None) -> torch.Tensor | None:
        if stats is None:
            return None
        given = torch.from_numpy(np.array(stats, dtype=np.float32)).to(self.device)  # a copy: may be read-only
        if given.shape[-2:] != (2, self.stats_channels) or given.ndim not in (2, 3):
            raise VrstyleError(f"statistics of shape {tuple(given.shape)} do not fit this model "
                               f"(expects (2, {self.stats_channels}))")
        return given

    def _bounds(self, bounds: np.ndarray | None, tiles: np.ndarray) -> Bounds | None:
        """Tiles' bounds (:meth:`tiles.TileGrid.bounds`) checked, or None where no border
        crosses a tile (then they change nothing)."""
        if bounds is None:
            return None
        count, height, width = tiles.shape[:3]
        bounds = as_bounds(np.asarray(bounds).reshape(-1, 4))
        try:
            check_bounds(bounds, count, height, width, STRIDE)
        except ValueError as exc:
            raise VrstyleError(str(exc)) from None
        return bounds if crosses(bounds, height, width) else None

    def _run(self, pixels: torch.Tensor, given: torch.Tensor | None, crop: int, margin: int,
             capture_rows: int | None, bounds: Bounds | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 NHWC in, uint8 NHWC out (cropped), plus the capture buffer if asked for.

        The capture buffer is made here rather than passed in, so a compiled version mutates
        none of its inputs (CUDA graphs need that).
        """
        capture = None
        if capture_rows is not None:
            shape = (3, self.stats_channels) if capture_rows == 0 else (capture_rows, 3, self.stats_channels)
            capture = torch.empty(shape, device=self.device)
        out = self.model(self._to_network(pixels), NormContext(given, capture, margin, bounds))
        height, width = pixels.shape[1:3]
        out = out[:, :, crop:height - crop, crop:width - crop]
        return out.float().clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous(), capture

    @torch.inference_mode()
    def measure(self, tiles: np.ndarray, margin: int, bounds: np.ndarray | None = None,
                stats: np.ndarray | None = None, measure_to: int = 0) -> np.ndarray:
        """Normalisation moments of the tiles' cores (``margin`` px in), without stylising.

        Args:
            tiles: (N, H, W, 3 or 4) uint8.
            margin: pixels on each side of a tile outside its core.
            bounds: (N, 4) where the image lies in each tile (:meth:`tiles.TileGrid.bounds`).
            stats: None: the tiles are normalised with their joint statistics layer by layer,
                exactly as the whole frame would be, so a sample of a frame's tiles measures
                the frame. Given: normalised with these, measuring each tile.
            measure_to: with ``stats``, stop after the layer holding column ``measure_to - 1``
                (0: run every layer); the columns after it come back with count 0.

        Returns:
            (3, C) joint moments without ``stats``, else (N, 3, C), float64.
        """
        bounds = self._bounds(bounds, tiles)
        given = self._given(stats)
        if given is None:
            capture = torch.empty(3, self.stats_channels, device=self.device)
        else:
            capture = torch.zeros(len(tiles), 3, self.stats_channels, device=self.device)
        try:
            self.model(self.to_input(tiles), NormContext(given, capture, margin, bounds,
                                                         measure_to if given is not None else 0))
        except MeasuredEnough:
            pass
        return capture.cpu().numpy().astype(np.float64)

    @torch.inference_mode()
    def stylize(self, tiles: np.ndarray, stats: np.ndarray | None, crop: int = 0,
                bounds: np.ndarray | None = None) -> np.ndarray:
        """Stylise uint8 tiles and cut ``crop`` px (the halo) off every side.

        Args:
            tiles: (N, H, W, 3) uint8.
            stats: (2, C) or (N, 2, C) statistics, or None for per-tile InstanceNorm.
            crop: pixels to drop on each side of the output.
            bounds: (N, 4) where the image lies in each tile, or None: each tile is an image.

        Returns:
            (N, H - 2 crop, W - 2 crop, 3) uint8.
        """
        out, _ = self._run(self._upload(tiles), self._given(stats), crop, 0, None, self._bounds(bounds, tiles))
        return out.cpu().numpy()

    @torch.inference_mode()
    def stylize_and_measure(self, tiles: np.ndarray, stats: np.ndarray | None, crop: int,
                            margin: int, bounds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stylise tiles and, in the same pass, measure their cores' moments for the next frame.

        Args:
            tiles: (N, H, W, 3 or 4) uint8 (alpha is ignored).
            stats: (2, C) or (N, 2, C) statistics to normalise with, or None to normalise with
                the joint statistics of the whole batch (a stream's first frame) and return them.
            crop: pixels to drop on each side of the output (the halo).
            margin: pixels on each side of a tile outside its core (overlap + halo); the
                moments cover only the cores, which partition the frame.
            bounds: (N, 4) where the image lies in each tile (:meth:`tiles.TileGrid.bounds`):
                tiles at the image's border reflect there at every layer, as the whole image
                does, and measure only inside it. None: each tile's edges are the image's.

        Returns:
            (N, H - 2 crop, W - 2 crop, 3) uint8 tiles, and (M, 3, C) float64 moments to merge
            with :func:`~vrstyle.normstats.combine_moments`: one row per tile when statistics
            are given (M = N; each tile's own, whatever else shares the batch), else one joint
            row (M = 1).
        """
        given = self._given(stats)
        pixels = self._upload(tiles)
        count = len(tiles)
        bounds = self._bounds(bounds, tiles)
        if given is None:  # a stream's first frame: eager, as a graph per batch size would not pay
            out, capture = self._run(pixels, None, crop, margin, 0, bounds)
            return out.cpu().numpy(), capture[None].cpu().numpy().astype(np.float64)
        if self._compiled is None or bounds is not None:
            out, capture = self._run(pixels, given, crop, margin, count, bounds)
        else:  # one graph per power-of-two batch: RGB, per-tile statistics, padded
            padded = 1 << (count - 1).bit_length()
            pixels = pixels[..., :3]
            pixels = torch.cat([pixels, pixels[:1].expand(padded - count, -1, -1, -1)])
            given = given.expand(count, -1, -1) if given.ndim == 2 else given
            given = torch.cat([given, given[:1].expand(padded - count, -1, -1)])
            out, capture = self._compiled(pixels, given, crop, margin, padded)
        return out[:count].cpu().numpy(), capture[:count].cpu().numpy().astype(np.float64)

    def warmup(self, tile_shape: tuple[int, int], max_batch: int, crop: int, margin: int) -> None:
        """Build the CUDA graphs of a compiled engine for ``tile_shape`` tiles ahead of time: one
        per power-of-two batch size up to ``max_batch``, so no request pays for compilation."""
        if self._compiled is None:
            return
        tiles = np.random.default_rng(0).integers(0, 256, (max_batch, *tile_shape, 3), dtype=np.uint8)
        stats = np.stack([np.zeros(self.stats_channels), np.ones(self.stats_channels)]).astype(np.float32)
        for count in sorted({1 << i for i in range(max(max_batch - 1, 0).bit_length() + 1)}):
            self.stylize_and_measure(tiles[:count], stats, crop, margin)
