"""Binary convolution kernels against float convolutions of the same shape, in one run.

    python benchmarks/binary_kernels.py --size 128 --threads 1,2 --models candy/teacher candy/binary \
        --out benchmarks/results/binary-kernels

For every distinct binary-activation layer shape of the shipped students (and any given with
``--shape C_IN,C_OUT,KERNEL,STRIDE,PLANES``), at ``--size`` px (128: the body of a 512x512
image), on each thread count: a float ``torch.nn.Conv2d`` of the same shape (fp32, the
teacher's arithmetic), the float simulation of the binary layer (what the engine ran before),
the numpy popcount path it replaces (patches materialised, ``np.bitwise_count``), and the
compiled kernel (packing with thresholds and reflection padding, then AND + popcount). Every
timing includes the layer's padding; the kernel's includes packing. Medians of ``--repeats``
interleaved runs; the compiled kernels are warmed up first, and their first-use compile time
(or cache load) is reported.

``--models`` adds whole networks, same run, on ``--network-threads`` threads, through
:class:`~vrstyle.models.engine.StyleEngine` as the workers run them: a whole 512x512 image
(per-image statistics) and a batch of two Quest 3 tiles (512 px cores with the default halo
and overlap, 656x656 px, given statistics); each both on the compiled kernels (the engine's
default: popcount for binary layers, :mod:`vrstyle.kernels.rgbconv` for the RGB tail) and on
PyTorch's layers (``reference``: the float simulation of binary layers), with its throughput
against the first model on each path; and the RGB tail alone, PyTorch's against the compiled.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from vrstyle.kernels.bits import pack_channels
from vrstyle.models import available_models
from vrstyle.models.binary import BinaryConv2d
from vrstyle.models.fast import PackedConvLayer
from vrstyle.models.transformer import ConvLayer
from vrstyle.timing import interleaved_medians


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
    if stride == 1 and hasattr(np, "bitwise_count"):  # numpy >= 2.0
        runs["numpy popcount"] = numpy_path
    with torch.inference_mode():
        assert torch.equal(fast(x), layer(x)), "the kernel no longer equals the float simulation"
        median = interleaved_medians(runs, repeats)
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


FLOAT_LAYERS = {"conv1 3->32 9x9": (3, 32, 9, 512), "conv2 32->64 3x3 s2": (32, 64, 3, 512),
                "conv3 64->128 3x3 s2": (64, 128, 3, 256), "deconv1 128->64 3x3": (128, 64, 3, 256),
                "deconv2 64->32 3x3": (64, 32, 3, 512), "deconv3 32->3 9x9": (32, 3, 9, 512)}
"""The full-precision layers of a 512x512 frame (input channels, output channels, kernel, input size)."""


def int8_rows(threads: int, repeats: int) -> list[dict]:
    """Each full-precision layer as fp32 ``Conv2d`` and as PyTorch's int8 convolution (x86 backend:
    VNNI), with and without quantizing its input and dequantizing its output: what running the
    students' float layers in int8 would gain."""
    import torch.ao.nn.quantized as nnq

    torch.set_num_threads(threads)
    torch.backends.quantized.engine = "x86"
    rows = []
    for name, (c_in, c_out, kernel, size) in FLOAT_LAYERS.items():
        stride = 2 if "s2" in name else 1
        dense = torch.nn.Conv2d(c_in, c_out, kernel, stride).eval()
        weight = dense.weight.detach()
        quantized = nnq.Conv2d(c_in, c_out, kernel, stride)
        quantized.set_weight_bias(torch.quantize_per_channel(
            weight, weight.abs().amax((1, 2, 3)) / 127, torch.zeros(c_out, dtype=torch.long), 0, torch.qint8),
            dense.bias.detach())
        quantized.scale, quantized.zero_point = 0.05, 128
        x = torch.rand(1, c_in, size + kernel - 1, size + kernel - 1) * 4
        xq = torch.quantize_per_tensor(x, 4 / 255, 0, torch.quint8)
        runs = {"fp32": lambda: dense(x), "int8": lambda: quantized(xq),
                "int8 with quantize and dequantize": lambda: quantized(torch.quantize_per_tensor(
                    x, 4 / 255, 0, torch.quint8)).dequantize()}
        with torch.inference_mode():
            ms = {key: seconds * 1e3 for key, seconds in interleaved_medians(runs, repeats).items()}
        rows.append({"layer": name, "threads": threads, "ms": ms})
    return rows


def network_rows(names: list[str], threads: int, repeats: int) -> list[dict]:
    from vrstyle import settings
    from vrstyle.models import resolve_model
    from vrstyle.models.engine import StyleEngine

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    whole = rng.integers(0, 256, (1, 512, 512, 3), dtype=np.uint8)
    side = settings.TILE + 2 * (settings.HALO + settings.OVERLAP)
    tiles = rng.integers(0, 256, (2, side, side, 3), dtype=np.uint8)
    engines = []
    for name in names:
        model = resolve_model(name).load()
        engines.append((name, "compiled", StyleEngine(model)))
        engines.append((name, "reference", StyleEngine(model, reference=True)))
    stats = {id(e): e.measure(tiles, settings.HALO + settings.OVERLAP)[1:] for _, _, e in engines}
    runs = {}
    for name, path, engine in engines:
        given = stats[id(engine)].astype(np.float32)
        runs[(name, path, "whole 512x512")] = lambda e=engine: e.stylize(whole, None)
        runs[(name, path, f"2 tiles {side}x{side}")] = lambda e=engine, g=given: e.stylize(tiles, g)
    median = interleaved_medians(runs, repeats)
    rows = []
    for (name, path, case), seconds in median.items():
        rows.append({"model": name, "path": path, "case": case, "threads": threads, "ms": seconds * 1e3,
                     "throughput_vs_first": median[(names[0], "compiled", case)] / seconds,
                     "throughput_vs_first_reference": median[(names[0], "reference", case)] / seconds})
    return rows


def tail_rows(threads: int, repeats: int) -> list[dict]:
    """The RGB tail of a 512x512 frame (32 -> 3 channels, 9x9), PyTorch's convolution against the compiled one."""
    from vrstyle.kernels.bconv import set_threads
    from vrstyle.kernels.rgbconv import rgb_conv9

    rows = []
    for count in sorted({1, threads}):
        torch.set_num_threads(count)
        set_threads(count)
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 4, (1, 32, 520, 520)).astype(np.float32)
        weight, bias = rng.normal(0, 0.05, (3, 32, 9, 9)).astype(np.float32), np.zeros(3, np.float32)
        tensors = [torch.from_numpy(a) for a in (x, weight, bias)]
        runs = {"PyTorch conv2d": lambda: torch.nn.functional.conv2d(*tensors),
                "compiled": lambda: rgb_conv9(x, weight, bias)}
        with torch.inference_mode():
            median = interleaved_medians(runs, repeats)
        rows.append({"threads": count, "ms": {k: v * 1e3 for k, v in median.items()},
                     "speedup": median["PyTorch conv2d"] / median["compiled"]})
    torch.set_num_threads(threads)
    return rows


def rows_in_fresh_process(threads: int, args: argparse.Namespace) -> list[dict]:
    """Kernel rows for one thread count, measured in a process started with that many threads:
    torch's and numba's OpenMP pools do not reliably shrink once started."""
    import os
    import subprocess

    command = [sys.executable, __file__, "--size", str(args.size), "--repeats", str(args.repeats),
               "--rows-for-threads", str(threads)] + [f"--shape={s}" for s in args.shape]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        sys.exit(f"binary_kernels.py: the {threads}-thread measurement failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="input height and width, px (default 128)")
    parser.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shape", action="append", default=[], help="C_IN,C_OUT,KERNEL,STRIDE,PLANES (repeatable)")
    parser.add_argument("--models", nargs="*", default=[], help="whole networks to time, the first is the baseline")
    parser.add_argument("--network-threads", type=int, default=2, help="threads for the whole networks (default 2)")
    parser.add_argument("--int8", action="store_true", help="also time the float layers as int8 convolutions")
    parser.add_argument("--rows-for-threads", type=int, help=argparse.SUPPRESS)  # one thread count, JSON out
    parser.add_argument("--out", default="benchmarks/results/binary-kernels", help="output prefix (.json, .md)")
    args = parser.parse_args()
    from vrstyle.kernels.bconv import kernel_path

    shapes = sorted(shipped_shapes() | {tuple(int(v) for v in s.split(",")) for s in args.shape})
    if args.rows_for_threads:
        print(json.dumps([measure(shape, args.size, args.rows_for_threads, args.repeats) for shape in shapes]))
        return 0
    first_use = first_use_seconds()
    rows = [row for t in args.threads.split(",") for row in rows_in_fresh_process(int(t), args)]
    rows.sort(key=lambda r: (tuple(r["shape"].values()), r["threads"]))
    networks = network_rows(args.models, args.network_threads, max(3, args.repeats // 2)) if args.models else []
    tail = tail_rows(args.network_threads, args.repeats) if args.models else []
    int8 = int8_rows(args.network_threads, args.repeats) if args.int8 else []
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    report = {"command": command, "machine": platform.processor() or platform.machine(), "kernel_path": kernel_path(),
              "torch": torch.__version__, "first_use_seconds": first_use, "rows": rows, "networks": networks,
              "rgb_tail": tail, "int8": int8}
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
    if networks:
        lines += ["", f"## Whole networks ({args.network_threads} threads, StyleEngine, medians, ms)", "",
                  f"| model | layers on | case | ms | throughput vs {args.models[0]} compiled | vs {args.models[0]} "
                  "reference |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['path']} | {r['case']} | {r['ms']:.0f} | {r['throughput_vs_first']:.2f}x "
                  f"| {r['throughput_vs_first_reference']:.2f}x |" for r in networks]
        lines += ["", "## The RGB tail of a 512x512 frame (32->3 channels, 9x9; medians, ms)", "",
                  "| threads | PyTorch conv2d | compiled | speed-up |", "|---|---|---|---|"]
        lines += [f"| {r['threads']} | {r['ms']['PyTorch conv2d']:.1f} | {r['ms']['compiled']:.1f} | {r['speedup']:.1f}x |"
                  for r in tail]
    if int8:
        lines += ["", f"## The full-precision layers of a 512x512 frame as int8 ({args.network_threads} threads, "
                      "PyTorch x86 quantized backend, medians, ms)", "",
                  "| layer | fp32 | int8 | int8 with quantize + dequantize | gain |", "|---|---|---|---|---|"]
        for r in int8:
            ms = r["ms"]
            both = ms["int8 with quantize and dequantize"]
            lines.append(f"| {r['layer']} | {ms['fp32']:.1f} | {ms['int8']:.1f} | {both:.1f} | "
                         f"{ms['fp32'] / both:.1f}x |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
