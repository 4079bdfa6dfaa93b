"""Distillation losses and image metrics: pixel MSE, a VGG19 perceptual term, PSNR, SSIM.

The VGG19 features are the shared data's ``vgg/vgg19_features.pth`` (torchvision's
``vgg19().features`` layout), which expect Caffe-style input: BGR, 0..255, minus the ImageNet
mean, not torchvision's normalisation.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vrstyle.errors import VrstyleError
from vrstyle.models.registry import read_state_dict

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
RELU = {f"relu{block}_{conv}": index for (block, conv), index in zip(
    [(b, c) for b, convs in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for c in range(1, convs + 1)],
    (1, 3, 6, 8, 11, 13, 15, 17, 20, 22, 24, 26, 29, 31, 33, 35))}
"""Indices of ReLU outputs in ``vgg19().features`` (relu1_1 is 1, relu5_4 is 35)."""
PERCEPTUAL_LAYERS = ("relu2_2",)
"""Feature layers the perceptual term compares (Johnson et al. use relu2_2 for content)."""
VGG_CONVS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)


class VGGFeatures(nn.Module):
    """VGG19 convolutional features up to the deepest requested ReLU, frozen.

    Args:
        path: the ``vgg19_features.pth`` state dict.
        layers: names from :data:`RELU` whose outputs :meth:`forward` returns, in the
            network's order (:attr:`names`).

    Shape:
        RGB (N, 3, H, W) 0..255 -> list of feature maps, one per layer.
    """

    def __init__(self, path: Path, layers: tuple[str, ...] = PERCEPTUAL_LAYERS):
        super().__init__()
        unknown = [name for name in layers if name not in RELU]
        if unknown:
            raise VrstyleError(f"unknown VGG layers {unknown}; known: {', '.join(RELU)}")
        modules: list[nn.Module] = []
        channels = 3
        for spec in VGG_CONVS:
            if spec == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(channels, spec, 3, padding=1), nn.ReLU()]
                channels = spec
        depth = max(RELU[name] for name in layers) + 1
        self.features = nn.Sequential(*modules[:depth])
        state = {key.removeprefix("features."): value for key, value in read_state_dict(path).items()}
        try:
            wanted = {key: value.float() for key, value in state.items() if int(key.split(".")[0]) < depth}
            self.features.load_state_dict(wanted, strict=True)
        except (RuntimeError, ValueError) as exc:
            raise VrstyleError(f"{path}: not VGG19 features ({str(exc).splitlines()[0]})") from None
        self.names = sorted(set(layers), key=RELU.get)
        """The layers :meth:`forward` returns, in its order (the network's)."""
        self.taps = [RELU[name] for name in self.names]
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of :attr:`names`, in that order."""
        x = rgb.flip(1) - self.mean
        out = []
        for index, module in enumerate(self.features):
            x = module(x)
            if index in self.taps:
                out.append(x)
        return out


def perceptual_loss(vgg: VGGFeatures, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of VGG features, each layer normalised by its target's mean square."""
    with torch.no_grad():
        targets = vgg(target)
    return sum(F.mse_loss(o, t) / t.pow(2).mean().clamp_min(1e-6) for o, t in zip(vgg(output), targets))


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``F F^T / (C H W)`` of (N, C, H, W) features: (N, C, C), the style statistics
    of Gatys et al. (the normalisation makes them independent of the image size).

    >>> gram(torch.ones(1, 2, 3, 3))
    tensor([[[0.5000, 0.5000],
             [0.5000, 0.5000]]])
    """
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels: smoothness for optimised images."""
    return (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean() + (image[..., 1:] - image[..., :-1]).pow(2).mean()


def psnr(output: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR (dB) of images clamped to 0..255; ``inf`` for identical images."""
    mse = F.mse_loss(output.clamp(0, 255).double(), reference.clamp(0, 255).double()).item()
    return 10 * math.log10(255**2 / mse) if mse else math.inf


def ssim(output: torch.Tensor, reference: torch.Tensor) -> float:
    """SSIM (Wang et al. 2004; 11 px Gaussian window, sigma 1.5) of 0..255 images, channels averaged."""
    from pytorch_msssim import ssim as ssim_fn

    return float(ssim_fn(output.clamp(0, 255).float(), reference.clamp(0, 255).float(), data_range=255,
                         size_average=True))


def luminance_transfer(styled: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Colour-corrected target: the stylised luminance with the content photo's chroma.

    Gatys et al., "Preserving Color in Neural Artistic Style Transfer" (2016), luminance-only
    transfer in YCbCr (BT.601). Applied to teacher outputs ahead of time, the student learns
    the correction instead of running it after every frame.
    """
    matrix = styled.new_tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    y_styled = torch.einsum("ij,njhw->nihw", matrix[:1], styled)
    chroma = torch.einsum("ij,njhw->nihw", matrix[1:], content)
    ycc = torch.cat([y_styled, chroma], dim=1)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(matrix), ycc)
