"""Export a teacher or student as an ONNX file (with a model card beside it) for other runtimes.

The graph takes float32 RGB (N, 3, H, W) in 0..255, H and W multiples of 4, and returns the
stylised image clamped to 0..255. With onnxruntime installed, the file is run once on a
synthetic image and compared with vrstyle's own output.
"""

from __future__ import annotations

import argparse
import logging
from vrstyle.commands._checks import onnx_output
from vrstyle.commands._common import positive_int
from vrstyle.errors import VrstyleError

log = logging.getLogger(__name__)

CARD = """# {name} as ONNX

Exported by `vrstyle export {name} {file}` (vrstyle {version}, opset {opset}) from `{source}`.

- **Input** `image`: float32 RGB, shape (N, 3, H, W), values 0..255; H and W multiples of 4
  (pad or crop to them), any size otherwise.
- **Output** `stylised`: float32 RGB, the same shape, clamped to 0..255 (round to uint8 to show it).
- Each image is normalised with its own statistics (instance normalisation), as the network was
  trained; vrstyle's tiled, frame-statistics paths are not part of the graph.
{binary}
## Running it elsewhere

```python
import numpy as np, onnxruntime
from PIL import Image

session = onnxruntime.InferenceSession("{file}")
photo = np.asarray(Image.open("photo.jpg").convert("RGB"), dtype=np.float32)
h, w = (s - s % 4 for s in photo.shape[:2])
image = photo[:h, :w].transpose(2, 0, 1)[None]
out = session.run(None, {{"image": np.ascontiguousarray(image)}})[0][0]
Image.fromarray(np.rint(out.transpose(1, 2, 0)).astype(np.uint8)).save("stylised.png")
```

Any ONNX runtime with opset {opset} runs it (onnxruntime on CPUs, GPUs and phones; TensorRT;
OpenVINO; ONNX.js in a browser).

## Checked
{check}
"""

BINARY_NOTE = """- Binary layers are exported as their exact float form: ±1 activations and ±1 weights times
  per-channel scales, in ordinary convolutions. That is the same function as vrstyle's popcount
  kernels, not their speed.
- A binary student is sensitive to rounding: an activation within float32 rounding of a
  threshold binarises either way, and instance normalisation spreads the change. Another
  runtime's output therefore differs from vrstyle's more than a teacher's does (see below).
"""


def check_size(text: str) -> tuple[int, int]:
    """``HxW`` in pixels, both positive multiples of 4."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 256x384, got {text!r}")
    height, width = (int(p) for p in parts)
    if height < 4 or width < 4 or height % 4 or width % 4:
        raise argparse.ArgumentTypeError(f"{text}: height and width must be positive multiples of 4")
    return height, width


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model name (candy, candy/teacher, ...) or model file")
    parser.add_argument("output", type=onnx_output,
                        help="the .onnx file to write (its card goes beside it as .md)")
    parser.add_argument("--opset", type=positive_int, default=18, help="ONNX opset version")
    parser.add_argument("--check", type=check_size, default=(256, 384), metavar="HxW",
                        help="size of the synthetic image the file is checked on with onnxruntime")
    parser.add_argument("--no-check", action="store_true", help="do not run the file with onnxruntime")


def run(args: argparse.Namespace) -> int:
    from vrstyle.models import StudentNet, resolve_model
    from vrstyle.models.export import compare_onnx, export_onnx

    spec = resolve_model(args.model)
    model = spec.load()
    export_onnx(model, args.output, args.opset)
    size = args.output.stat().st_size
    check = "Not run (`--no-check`)."
    if not args.no_check:
        try:
            agreement = compare_onnx(args.output, model, synthetic_image(*args.check))
        except VrstyleError as exc:
            log.warning("not checked: %s", exc)
            check = f"Not run: {exc}."
        else:
            check = (f"onnxruntime against vrstyle (torch) on a synthetic {args.check[0]}x{args.check[1]} image: "
                     f"at most {agreement.max_difference:.0f} grey level(s) apart, "
                     f"{100 * agreement.beyond_one:.2f}% of values more than 1 apart, PSNR {agreement.psnr:.1f} dB.")
    card = CARD.format(name=spec.name, file=args.output.name, source=spec.path.name, opset=args.opset,
                       version=_version(), check=check,
                       binary=BINARY_NOTE if isinstance(model, StudentNet) else "")
    args.output.with_suffix(".md").write_text(card)
    print(f"wrote {args.output} ({size / 1e6:.2f} MB) and its card {args.output.with_suffix('.md').name}")
    print(check)
    return 0


def synthetic_image(height: int, width: int, seed: int = 0):
    """(1, 3, H, W) smooth random colour fields with fine noise: edges and flat areas, like a photo."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 32), max(2, width // 32), generator=generator) * 255
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return (smooth + 8 * torch.randn(1, 3, height, width, generator=generator)).clamp(0, 255)


def _version() -> str:
    from vrstyle.cli import _version as version

    return version()

