"""Pixels where the GPU's reprojection and the float64 reference may rightly disagree."""

from __future__ import annotations

import numpy as np


def edge_ties(pixels: np.ndarray, reach: int = 0) -> np.ndarray:
    """(H, W) bool: target pixels whose source position (H, W, 2) lies exactly on the source
    eye's bounds (an exact tie: either side is right), and, with ``reach``, the pixels within
    ``reach`` along their row that a disocclusion fill may take from them."""
    height, width = pixels.shape[:2]
    tied = np.zeros((height, width), bool)
    for axis, size in ((0, width), (1, height)):
        tied |= (np.abs(pixels[..., axis] - 0.5) < 1e-3) | (np.abs(pixels[..., axis] - (size - 0.5)) < 1e-3)
    near = tied.copy()
    for k in range(1, reach + 1):
        near[:, k:] |= tied[:, :-k]
        near[:, :-k] |= tied[:, k:]
    return near
