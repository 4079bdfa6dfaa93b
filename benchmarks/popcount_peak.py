"""The CPU's AND + popcount + add rate with everything in registers, against the binary kernel's.

    python benchmarks/popcount_peak.py --out benchmarks/results/popcount-peak

The ceiling for :func:`vrstyle.kernels.bconv.binary_conv`: 16 accumulators of ``popc(word &
weight)`` over a few KB of words (in L1, changed every pass so nothing is hoisted), on 1 and 2
threads; then the kernel itself on the shipped students' 128->128 3x3 body convolution (3
activation planes, 128x128 px, packed input ready), its rate in the same words.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

from vrstyle.kernels import bconv
from vrstyle.kernels.bconv import _popcount


@njit(parallel=True, cache=True)
def _peak(words, weights, passes, out):  # pragma: no cover - compiled
    for thread in prange(len(out)):
        acc = np.zeros(16, np.uint64)
        for p in range(passes):
            for i in range(len(words)):
                word = words[i] ^ np.uint64(p)
                for j in range(16):
                    acc[j] += _popcount(word & weights[j])
        out[thread] = acc.sum()


def peak_rate(threads: int, passes: int = 20000) -> float:
    """Word-pairs ANDed, counted and added per second."""
    rng = np.random.default_rng(0)
    words, weights = rng.integers(0, 2**63, 512, dtype=np.uint64), rng.integers(0, 2**63, 16, dtype=np.uint64)
    numba.set_num_threads(threads)
    out = np.zeros(threads, np.uint64)
    _peak(words, weights, 10, out)
    start = time.perf_counter()
    _peak(words, weights, passes, out)
    return threads * passes * len(words) * 16 / (time.perf_counter() - start)


def kernel_rate(threads: int, repeats: int = 15) -> float:
    rng = np.random.default_rng(0)
    planes, size, channels = 3, 128, 128
    bits = rng.integers(0, 2**63, (planes, 1, size + 2, size + 2, channels // 64), dtype=np.uint64)
    kernels, ones = bconv.pack_kernels(rng.choice([-1.0, 1.0], (channels, channels, 3, 3)).astype(np.float32))
    beta, scale, bias = (rng.random(n).astype(np.float32) for n in (planes, channels, channels))
    out = np.empty((1, channels, size, size), np.float32)
    numba.set_num_threads(threads)
    run = lambda: bconv.binary_conv(bits, kernels, 3, 3, ones, channels * 9, 1, beta, scale, bias, out)  # noqa: E731
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return planes * size * size * channels * 9 * (channels // 64) / float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="output prefix (.json, .md)")
    args = parser.parse_args()
    rows = {threads: (peak_rate(threads), kernel_rate(threads)) for threads in (1, 2)}
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = ["# AND + popcount + add: the CPU's rate against the binary kernel's", "", f"Command: `{command}`", "",
             f"Kernel path: {bconv.kernel_path()}. Rates in G word-pairs per second (64 binary MACs each).", "",
             "| threads | register-resident loop | binary_conv 128->128 3x3, 3 planes | kernel / loop |",
             "|---|---|---|---|"]
    lines += [f"| {t} | {p / 1e9:.1f} | {k / 1e9:.1f} | {k / p:.0%} |" for t, (p, k) in rows.items()]
    print("\n".join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".md").write_text("\n".join(lines) + "\n")
        Path(args.out + ".json").write_text(json.dumps({"command": command, "rates": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
