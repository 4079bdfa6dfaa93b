"""Binary convolution kernels against float convolutions of the same shape, in one run.

    python benchmarks/binary_kernels.py --size 128 --threads 1,2 --out benchmarks/results/binary-kernels

For every distinct binary-activation layer shape of the shipped students (and any given with
``--shape C_IN,C_OUT,KERNEL,STRIDE,PLANES``), at ``--size`` px (128: the body of a 512x512
image), on each thread count: a float ``torch.nn.Conv2d`` of the same shape (fp32, the
teacher's arithmetic), the float simulation of the binary layer (what the engine ran before),
the numpy popcount path it replaces (patches materialised, ``np.bitwise_count``), and the
compiled kernel (packing with thresholds and reflection padding, then AND + popcount). Every
timing includes the layer's padding; the kernel's includes packing. Medians of ``--repeats``
interleaved runs; the compiled kernels are warmed up first, and their first-use compile time
(or cache load) is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vrstyle.kernels.bits import pack_channels
from vrstyle.models import available_models
from vrstyle.models.binary import BinaryConv2d
from vrstyle.models.fast import PackedConvLayer
from vrstyle.models.transformer import ConvLayer


def numpy_popcount_conv(x_words: np.ndarray, w_words: np.ndarray, count: int) -> np.ndarray:
    """The previous exact path (numpy, stride 1): patches materialised, ``np.bitwise_count``."""
    n, h, w, words = x_words.shape
    o, kh, kw, _ = w_words.shape
    ho, wo = h - kh + 1, w - kw + 1
    patches = np.stack([x_words[:, ky:ky + ho, kx:kx + wo] for ky in range(kh) for kx in range(kw)],
                       axis=3).reshape(n * ho * wo, -1)
    kernels = w_words.reshape(o, -1)
    ones_w = np.bitwise_count(kernels).sum(axis=1, dtype=np.int32)
    ones_x = np.bitwise_count(patches).sum(axis=1, dtype=np.int32)
    both = np.empty((len(patches), o), np.int32)
    rows = max(1, (1 << 22) // kernels.size)
    for start in range(0, len(patches), rows):
        both[start:start + rows] = np.bitwise_count(patches[start:start + rows, None, :] & kernels[None]).sum(
            axis=2, dtype=np.int32)
    return (4 * both - 2 * ones_x[:, None] - 2 * ones_w[None, :] + count).reshape(n, ho, wo, o)


def shipped_shapes() -> set[tuple[int, int, int, int, int]]:
    shapes = set()
    for name, spec in available_models().items():
        if name.endswith("/teacher"):
            continue
        for module in spec.load().modules():
            if isinstance(module, BinaryConv2d) and module.act is not None:
                shapes.add((module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0],
                            module.planes))
    return shapes


def measure(shape: tuple[int, int, int, int, int], size: int, threads: int, repeats: int) -> dict:
    c_in, c_out, kernel, stride, planes = shape
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layer = ConvLayer(c_in, c_out, kernel, stride,
                      conv=lambda i, o, k, s: BinaryConv2d(i, o, k, s, planes=planes)).eval()
    dense = ConvLayer(c_in, c_out, kernel, stride).eval()
    fast = PackedConvLayer(layer)
    from vrstyle.kernels import bconv

    bconv.set_threads(threads)
    x = torch.randn(1, c_in, size, size)
    conv = layer.conv2d
    w_words = pack_channels(conv.weight.detach().numpy() >= 0)

    def numpy_path():
        words = pack_channels(conv.act(layer.pad(x)).flatten(0, 1).numpy() > 0)
        for plane in words:
            numpy_popcount_conv(plane[None], w_words, c_in * kernel * kernel)

    runs = {"float conv2d": lambda: dense(x), "float simulation": lambda: layer(x), "compiled popcount": lambda: fast(x)}
    if stride == 1:
        runs["numpy popcount"] = numpy_path
    with torch.inference_mode():
        assert torch.equal(fast(x), layer(x)), "the kernel no longer equals the float simulation"
        for run in runs.values():
            run()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    macs = size // stride * (size // stride) * c_in * c_out * kernel * kernel
    return {"shape": dict(zip(("in", "out", "kernel", "stride", "planes"), shape)), "size": size, "threads": threads,
            "ms": {k: v * 1e3 for k, v in median.items()},
            "speedup_vs_conv2d": median["float conv2d"] / median["compiled popcount"],
            "speedup_vs_numpy": (median["numpy popcount"] / median["compiled popcount"]
                                 if "numpy popcount" in median else None),
            "binary_gmac_per_s": macs * planes / median["compiled popcount"] / 1e9}


def first_use_seconds() -> float:
    """Seconds for a fresh process to import, compile or load from cache, and run the kernels once."""
    import subprocess

    code = ("import time; t = time.perf_counter(); import torch; from vrstyle.models.fast import PackedConvLayer;"
            "from vrstyle.models.binary import BinaryConv2d; from vrstyle.models.transformer import ConvLayer;"
            "l = ConvLayer(64, 64, 3, conv=lambda i, o, k, s: BinaryConv2d(i, o, k, s, planes=1)).eval();"
            "t0 = time.perf_counter(); PackedConvLayer(l)(torch.randn(1, 64, 8, 8));"
            "print(time.perf_counter() - t0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="input height and width, px (default 128)")
    parser.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shape", action="append", default=[], help="C_IN,C_OUT,KERNEL,STRIDE,PLANES (repeatable)")
    parser.add_argument("--out", default="benchmarks/results/binary-kernels", help="output prefix (.json, .md)")
    args = parser.parse_args()
    from vrstyle.kernels.bconv import kernel_path

    shapes = sorted(shipped_shapes() | {tuple(int(v) for v in s.split(",")) for s in args.shape})
    first_use = first_use_seconds()
    rows = [measure(shape, args.size, int(t), args.repeats) for shape in shapes for t in args.threads.split(",")]
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    report = {"command": command, "machine": platform.processor() or platform.machine(), "kernel_path": kernel_path(),
              "torch": torch.__version__, "first_use_seconds": first_use, "rows": rows}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Binary convolution kernels against float convolutions ({args.size}x{args.size} px input)", "",
             f"Command: `{command}`", "",
             f"Kernel path: {kernel_path()}; torch {torch.__version__}; first use in a fresh process (compile or "
             f"cache load, then one run): {first_use:.2f} s. Medians of {args.repeats} interleaved runs, ms.", "",
             "| in->out, k, stride, planes | threads | float conv2d | float simulation | numpy popcount "
             "| compiled popcount | vs conv2d | vs numpy | binary GMAC/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, ms = r["shape"], r["ms"]
        numpy_ms = f"{ms['numpy popcount']:.1f}" if "numpy popcount" in ms else "-"
        vs_numpy = f"{r['speedup_vs_numpy']:.1f}x" if r["speedup_vs_numpy"] else "-"
        lines.append(f"| {s['in']}->{s['out']}, {s['kernel']}, {s['stride']}, {s['planes']} | {r['threads']} "
                     f"| {ms['float conv2d']:.2f} | {ms['float simulation']:.2f} | {numpy_ms} "
                     f"| {ms['compiled popcount']:.2f} | {r['speedup_vs_conv2d']:.1f}x | {vs_numpy} "
                     f"| {r['binary_gmac_per_s']:.0f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
