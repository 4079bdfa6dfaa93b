"""Which full-precision layers of a binary student could run in int8: fake quantization, by group.

    python benchmarks/int8_probe.py candy/binary --out benchmarks/results/int8-probe

Each group of the student's float layers gets int8 weights (symmetric, per output channel) and
uint8 inputs (one affine range per layer, measured on a training photo; the network's input
pixels are exact), simulated in float; the output is compared, as uint8 images, with the float
student's on held-out photos (PSNR). Speed is not measured here: ``binary_kernels.py --int8``
times the same layers in PyTorch's int8 convolution.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from vrstyle.models import resolve_model
from vrstyle.train.data import photo_paths
from vrstyle.train.evaluate import eval_photo

GROUPS = {"encoder conv1-conv3": ("conv1", "conv2", "conv3"), "conv1": ("conv1",),
          "decoder deconv1-deconv3": ("deconv1", "deconv2", "deconv3"), "deconv2-deconv3": ("deconv2", "deconv3")}


def quantized_weight(weight: torch.Tensor) -> torch.Tensor:
    step = weight.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / 127
    return (weight / step).round().clamp(-127, 127) * step


def input_quantizer(name: str, low: float, high: float):
    """A forward pre-hook rounding the layer's input to 256 levels over [low, high] (0..255 for pixels)."""
    low, span = (0.0, 255.0) if name == "conv1" else (min(low, 0.0), max(high, 0.0) - min(low, 0.0))
    step = span / 255
    zero = round(-low / step)

    def hook(module, inputs):
        return ((inputs[0] / step).round() + zero).clamp(0, 255).sub(zero).mul(step),

    return hook


def to_input(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a binary student, e.g. candy/binary")
    parser.add_argument("--photos", type=int, default=2, help="held-out Kodak photos (default 2)")
    parser.add_argument("--out", type=Path, required=True, help="output prefix (.md)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = resolve_model(args.model).load().eval()
    layers = {name: getattr(model, name) for group in GROUPS.values() for name in group}
    ranges: dict[str, tuple[float, float]] = {}

    def measure(name: str):
        def hook(module, inputs) -> None:
            ranges[name] = (inputs[0].amin().item(), inputs[0].amax().item())
        return hook

    handles = [layer.register_forward_pre_hook(measure(name)) for name, layer in layers.items()]
    calibration = eval_photo(photo_paths(("bsds500/train",), 1)[0])
    photos = [eval_photo(path) for path in photo_paths(("kodak24",), args.photos)]
    with torch.no_grad():
        model(to_input(calibration))
        for handle in handles:
            handle.remove()
        reference = [model(to_input(photo)).clamp(0, 255).round() for photo in photos]
        rows = []
        for group, names in GROUPS.items():
            weights = {name: layers[name].conv2d.weight.data.clone() for name in names}
            hooks = []
            for name in names:
                layers[name].conv2d.weight.data = quantized_weight(weights[name])
                hooks.append(layers[name].register_forward_pre_hook(input_quantizer(name, *ranges[name])))
            psnrs = []
            for photo, expected in zip(photos, reference):
                mse = (model(to_input(photo)).clamp(0, 255).round() - expected).pow(2).mean().item()
                psnrs.append(10 * np.log10(255 ** 2 / max(mse, 1e-12)))
            for name, hook in zip(names, hooks):
                hook.remove()
                layers[name].conv2d.weight.data = weights[name]
            rows.append((group, psnrs))
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [f"# {args.model}: float layers in int8 (fake quantization), PSNR against the float student", "",
             f"Command: `{command}`", "",
             f"Held-out photos: the first {args.photos} of kodak24, full size; input ranges from one BSDS500 "
             "training photo.", "", "| layers in int8 | " + " | ".join(f"photo {i + 1} dB" for i in range(len(photos)))
             + " |", "|---|" + "---|" * len(photos)]
    lines += [f"| {group} | " + " | ".join(f"{p:.1f}" for p in psnrs) + " |" for group, psnrs in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
