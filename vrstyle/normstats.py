"""Arithmetic on normalisation statistics, in numpy alone (the headset client has no torch).

A network's statistics are a ``(2, C)`` array (means, variances) over all its norm layers'
channels; a measurement over some pixels is a ``(3, C)`` array of moments (pixel count,
mean, variance) that merges exactly with others (Chan et al.'s parallel variance), so the
tiles of a frame, measured anywhere, add up to the frame's statistics.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np


def combine_moments(moments: Iterable[np.ndarray]) -> np.ndarray:
    """Merge (count, mean, variance) measurements of disjoint pixel sets into one.

    Args:
        moments: arrays of shape (3, C).

    Returns:
        (3, C) float64 moments of the union.

    Raises:
        ValueError: no measurements, or shapes differ.

    >>> a = np.array([[2.0], [1.0], [0.0]]); b = np.array([[2.0], [3.0], [0.0]])
    >>> combine_moments([a, b])[:, 0].tolist()
    [4.0, 2.0, 1.0]
    """
    stacked = np.stack([np.asarray(m, dtype=np.float64) for m in moments])
    if stacked.ndim != 3 or stacked.shape[1] != 3:
        raise ValueError(f"moments must be (3, C) arrays, got a stack of shape {stacked.shape}")
    count, mean, var = stacked[:, 0], stacked[:, 1], stacked[:, 2]
    total = count.sum(axis=0)
    safe = np.maximum(total, 1.0)
    merged_mean = (count * mean).sum(axis=0) / safe
    merged_var = (count * (var + (mean - merged_mean) ** 2)).sum(axis=0) / safe
    return np.stack([total, merged_mean, merged_var])


def moments_to_stats(moments: np.ndarray) -> np.ndarray:
    """(3, C) moments -> (2, C) float32 statistics (mean, variance)."""
    return np.asarray(moments[1:], dtype=np.float32)


def smooth_stats(previous: np.ndarray | None, current: np.ndarray, momentum: float) -> np.ndarray:
    """Exponential moving average of frame statistics, so stylisation does not flicker.

    Args:
        previous: smoothed statistics so far, or None for the first frame.
        current: this frame's statistics, same shape.
        momentum: weight of the past in [0, 1); 0 keeps only the current frame.

    Returns:
        ``momentum * previous + (1 - momentum) * current``.

    >>> smooth_stats(np.zeros(2), np.ones(2), 0.75).tolist()
    [0.25, 0.25]
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if previous is None:
        return current
    return previous * momentum + current * (1.0 - momentum)
