"""Summaries of measured times for the benchmarks: percentiles, means, and rates.

numpy only, so torch-free roles can summarise their own timings too.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np

PERCENTILES = (50, 95, 99)
"""Percentiles every summary reports (VR cares about the tail, not the mean)."""


def summarize(values: Iterable[float]) -> dict[str, float]:
    """Count, mean, min, max and the :data:`PERCENTILES` of ``values`` (linear interpolation).

    Args:
        values: measurements (e.g. seconds per frame); may be empty.

    Returns:
        ``{"count", "mean", "min", "max", "p50", "p95", "p99"}``; all but ``count`` are NaN
        for no values.

    >>> s = summarize([4.0, 1.0, 3.0, 2.0])
    >>> s["count"], s["mean"], s["p50"], s["max"]
    (4, 2.5, 2.5, 4.0)
    """
    data = np.asarray(list(values), dtype=np.float64)
    if data.size == 0:
        return {"count": 0, "mean": float("nan"), "min": float("nan"), "max": float("nan"),
                **{f"p{q}": float("nan") for q in PERCENTILES}}
    return {"count": int(data.size), "mean": float(data.mean()), "min": float(data.min()), "max": float(data.max()),
            **{f"p{q}": float(np.percentile(data, q)) for q in PERCENTILES}}


def median(values: Iterable[float]) -> float:
    """The 50th percentile (NaN for no values).

    >>> median([3.0, 1.0, 2.0])
    2.0
    """
    return summarize(values)["p50"]


def interleaved_medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run: all warmed up once, then timed in turn ``repeats`` times, so
    the machine's drift affects them alike."""
    for run in runs.values():
        run()
    times: dict = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    return {key: median(values) for key, values in times.items()}
