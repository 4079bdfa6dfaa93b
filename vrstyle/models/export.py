"""ONNX export of teachers and students, for runtimes other than vrstyle's own.

The exported graph is the network on a whole image, with per-image statistics (as trained):
float32 RGB ``(N, 3, H, W)`` in 0..255 in, the stylised image clamped to 0..255 out, height
and width dynamic (multiples of :data:`~vrstyle.models.transformer.STRIDE`). Binary layers
export as their exact float form (±1 convolutions), which any ONNX runtime runs; the popcount
kernels are vrstyle's own.

A binary student is sensitive to rounding in a way a teacher is not: an activation that lies
within float32 rounding of a threshold binarises either way, and instance normalisation spreads
one flipped bit's change over the whole image, where it flips others. Another runtime's
convolutions round differently from torch's, so a student's ONNX output matches vrstyle's less
closely than a teacher's does (:func:`compare_onnx` measures it).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vrstyle.errors import VrstyleError
from vrstyle.models.transformer import STRIDE

OPSET = 18
INPUT_NAME, OUTPUT_NAME = "image", "stylised"
TRACE_SIZE = (64, 96)
"""Height and width of the example input the graph is traced with (any multiples of the stride)."""


class Clamped(nn.Module):
    """``model(x).clamp(0, 255)``: what vrstyle shows of a network's unclamped output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image).clamp(0, 255)


def export_onnx(model: nn.Module, path: Path, opset: int = OPSET) -> None:
    """Write ``model`` (a vrstyle style network) as an ONNX file with dynamic height and width.

    Args:
        model: a teacher or student in eval mode, float32, on the CPU.
        path: the ``.onnx`` file to write.
        opset: ONNX opset version.

    Raises:
        VrstyleError: the ONNX exporter is not installed, or cannot translate the network.
    """
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise VrstyleError("ONNX export needs the onnx and onnxscript packages: "
                           "pip install 'vrstyle[export]'") from None
    wrapped = Clamped(model.float().cpu().eval())
    example = torch.rand(1, 3, *TRACE_SIZE) * 255
    height, width = (STRIDE * torch.export.Dim(name, min=1) for name in ("height_steps", "width_steps"))
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about torchvision ops it will not need
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(wrapped, (example,), dynamo=True, opset_version=opset, verbose=False,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes={"image": {2: height, 3: width}})
    except Exception as exc:  # the exporter raises many types, each with pages of context
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VrstyleError(f"the ONNX exporter could not translate this network: {first_line}") from None
    finally:
        exporter_log.setLevel(level)
    program.save(str(path))


@dataclass(frozen=True)
class Agreement:
    """How closely an ONNX runtime's output matches vrstyle's on one image (0..255 scale)."""

    max_difference: float
    """Largest difference after rounding both to grey levels."""
    beyond_one: float
    """Share of values more than 1 grey level apart."""
    psnr: float


def compare_onnx(path: Path, model: nn.Module, image: torch.Tensor) -> Agreement:
    """Run ``path`` through onnxruntime (CPU) and ``model`` through torch on ``image``, and compare.

    Args:
        path: an ONNX file written by :func:`export_onnx`.
        model: the network it was exported from.
        image: (N, 3, H, W) float RGB 0..255, H and W multiples of the stride.

    Raises:
        VrstyleError: onnxruntime is not installed, or cannot load or run the file.
    """
    try:
        import onnxruntime
    except ImportError:
        raise VrstyleError("checking an ONNX file needs onnxruntime: pip install 'vrstyle[export]'") from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        theirs = session.run(None, {INPUT_NAME: image.numpy().astype(np.float32)})[0]
    except Exception as exc:
        raise VrstyleError(f"{path}: onnxruntime could not run it ({str(exc).strip().splitlines()[0]})") from None
    with torch.no_grad():
        ours = Clamped(model.float().eval())(image.float()).numpy()
    difference = np.abs(np.rint(theirs) - np.rint(ours))
    mse = float(np.mean((theirs.astype(np.float64) - ours) ** 2))
    return Agreement(max_difference=float(difference.max()), beyond_one=float((difference > 1).mean()),
                     psnr=10 * math.log10(255**2 / mse) if mse else math.inf)
