"""Compiled binary convolution on channel-packed bits (numba): AND + popcount in registers.

Activations are packed 64 channels to a ``uint64`` word, pixel-major (NHWC bits), so one
pixel's 3x3 patch of 128 channels is 18 words; kernels are stored tap-major with output
channels innermost, so for each patch word the AND and popcount run over consecutive output
channels, which LLVM turns into AVX-512 ``vpopcntq`` on CPUs that have it (AMD Zen 4, Intel
Ice Lake and newer) and into AVX2 or scalar ``popcnt`` sequences elsewhere.

With ±1 values coded as bits ``b = (v + 1) / 2`` and ``K`` values per dot product:

    x·w = 4·popc(bx & bw) − 2·popc(bx) − 2·popc(bw) + K

The epilogue does, in fp32 and in the same order, exactly the float operations of
:class:`~vrstyle.models.binary.BinaryConv2d` (``sum_k beta_k acc_k``, times the weight scale,
plus the bias), so the two agree bit for bit. Packing applies the next layer's thresholds
(:class:`~vrstyle.models.binary.RSign`) and the network's reflection padding on the bits.

numba compiles for the CPU it runs on at first use and caches the machine code between runs;
no compiler is needed at install. :func:`kernel_path` says which instruction set it used.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from vrstyle.kernels.bits import pack_channels

WORD_BITS = 64


@intrinsic
def _popcount(typingctx, value):
    """LLVM's ``ctpop`` on a uint64 (numba cannot compile ``np.bitwise_count`` yet, numba#10403)."""
    signature = types.uint64(types.uint64)

    def codegen(context, builder, sig, args):
        return builder.ctpop(args[0])

    return signature, codegen


@njit(cache=True, inline="always")
def _reflect(i: int, size: int) -> int:
    if i < 0:
        return -i
    if i >= size:
        return 2 * size - 2 - i
    return i


@njit(parallel=True, cache=True)
def pack_planes(x, thresholds, spread, pad, out):  # pragma: no cover - compiled
    """Binarise ``x`` (N, C, H, W) float32 into packed planes with reflection padding.

    Plane ``k`` has bit ``c`` of pixel ``(y, x)`` set where ``(x_c - t_{k,c}) / s_c >= 0``
    (RSign's forward, in fp32). ``out`` is (P, N, H + 2 pad, W + 2 pad, words) uint64.
    Each image row is packed channel by channel into word rows (contiguous, vectorised),
    then written out with the padding columns reflected; padding rows reflect source rows.
    """
    planes, batch, hp, wp, words = out.shape
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    for job in prange(planes * batch * height):
        k = job // (batch * height)
        n = (job // height) % batch
        sy = job % height
        packed = np.zeros((words, width), np.uint64)
        for c in range(channels):
            word, bit = c // WORD_BITS, np.uint64(c % WORD_BITS)
            t, s = thresholds[k, c], spread[c]
            source = x[n, c, sy]
            target = packed[word]
            for px in range(width):
                target[px] |= np.uint64((source[px] - t) / s >= np.float32(0)) << bit
        # This source row lands on padded row sy + pad, and on the padding rows that reflect it.
        for py in (sy + pad, pad - sy, 2 * height - 2 - sy + pad):
            if 0 <= py < hp and _reflect(py - pad, height) == sy:
                row = out[k, n, py]
                for px in range(wp):
                    sx = _reflect(px - pad, width)
                    for word in range(words):
                        row[px, word] = packed[word, sx]


PIXELS = 4
"""Output pixels a micro-kernel call accumulates at once."""
BLOCK = 16
"""Output channels a micro-kernel call accumulates at once (two 512-bit vectors of uint64)."""


@intrinsic
def _and_popcount_block(typingctx, patches, kernels, taps, out, row, column):
    """``out[row + r, column + j] = sum_t popc(patches[r, t] & kernels[t, j])`` for
    ``r < PIXELS``, ``j < BLOCK``: the micro-kernel, written in LLVM IR so that its
    ``PIXELS * BLOCK / 8`` accumulators stay in vector registers over the whole patch
    (one weight load serves every pixel, one broadcast every output channel)."""
    signature = types.void(patches, kernels, taps, out, row, column)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        vector = ir.VectorType(i64, 8)
        lanes = BLOCK // 8
        ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector]), "llvm.ctpop.v8i64")
        patch_data = context.make_array(sig.args[0])(context, builder, args[0]).data
        kernel_data = context.make_array(sig.args[1])(context, builder, args[1]).data
        out_array = context.make_array(sig.args[3])(context, builder, args[3])
        count = args[2]
        entry = builder.basic_block
        loop, done = builder.append_basic_block("taps"), builder.append_basic_block("store")
        builder.branch(loop)
        builder.position_at_end(loop)
        tap = builder.phi(i64)
        tap.add_incoming(ir.Constant(i64, 0), entry)
        sums = []
        for _ in range(PIXELS * lanes):
            acc = builder.phi(vector)
            acc.add_incoming(ir.Constant(vector, [0] * 8), entry)
            sums.append(acc)
        weights = [builder.load(builder.bitcast(builder.gep(kernel_data, [
            builder.add(builder.mul(tap, ir.Constant(i64, BLOCK)), ir.Constant(i64, 8 * lane))]),
            vector.as_pointer()), align=8) for lane in range(lanes)]
        broadcast = ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8)
        updated = []
        for r in range(PIXELS):
            value = builder.load(builder.gep(patch_data, [builder.add(builder.mul(ir.Constant(i64, r), count), tap)]))
            splat = builder.insert_element(ir.Constant(vector, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
            splat = builder.shuffle_vector(splat, ir.Constant(vector, ir.Undefined), broadcast)
            for lane in range(lanes):
                acc = sums[r * lanes + lane]
                updated.append(builder.add(acc, builder.call(ctpop, [builder.and_(splat, weights[lane])])))
        for acc, value in zip(sums, updated):
            acc.add_incoming(value, loop)
        following = builder.add(tap, ir.Constant(i64, 1))
        tap.add_incoming(following, loop)
        builder.cbranch(builder.icmp_signed("<", following, count), loop, done)
        builder.position_at_end(done)
        for r in range(PIXELS):
            for lane in range(lanes):
                target = cgutils.get_item_pointer(context, builder, sig.args[3], out_array, [
                    builder.add(args[4], ir.Constant(i64, r)), builder.add(args[5], ir.Constant(i64, 8 * lane))])
                builder.store(updated[r * lanes + lane], builder.bitcast(target, vector.as_pointer()), align=8)
        return context.get_dummy_value()

    return signature, codegen


@njit(parallel=True, cache=True)
def binary_conv(bits, kernels, kh, kw, ones_w, count, stride, beta, scale, bias, out):  # pragma: no cover - compiled
    """Convolve packed planes with packed ±1 kernels; write the scaled float result.

    Args:
        bits: (P, N, Hp, Wp, words) uint64 padded input planes (:func:`pack_planes`).
        kernels: (O / BLOCK, kh * kw * words, BLOCK) uint64 packed kernel signs (:func:`pack_kernels`).
        kh, kw: kernel height and width.
        ones_w: (O,) int64 set bits of each kernel.
        count: values per dot product, ``C * kh * kw``.
        stride: convolution stride.
        beta: (P,) float32 plane weights; scale, bias: (O,) float32.
        out: (N, O, Ho, Wo) float32, ``O <= BLOCK * kernels.shape[0]``.

    Threads take output rows; within a row, :data:`PIXELS` pixels by :data:`BLOCK` output
    channels at a time accumulate in registers (:func:`_and_popcount_block`).
    """
    planes, batch, _, _, words = bits.shape
    blocks, taps = kernels.shape[0], kernels.shape[1]
    channels_out, height_out, width_out = out.shape[1], out.shape[2], out.shape[3]
    padded_width = -(-width_out // PIXELS) * PIXELS
    for job in prange(batch * height_out):
        n, y = job // height_out, job % height_out
        total = np.zeros((padded_width, blocks * BLOCK), np.float32)
        both = np.empty((padded_width, blocks * BLOCK), np.int64)
        ones_x = np.zeros(padded_width, np.int64)
        patches = np.empty((PIXELS, taps), np.uint64)
        for k in range(planes):
            for x in range(0, width_out, PIXELS):
                for r in range(PIXELS):
                    source = min(x + r, width_out - 1) * stride
                    t = 0
                    ones = 0
                    for ky in range(kh):
                        for kx in range(kw):
                            for word in range(words):
                                value = bits[k, n, y * stride + ky, source + kx, word]
                                patches[r, t] = value
                                ones += _popcount(value)
                                t += 1
                    ones_x[x + r] = ones
                for b in range(blocks):
                    _and_popcount_block(patches, kernels[b], taps, both, x, b * BLOCK)
            for x in range(width_out):
                row, counts = total[x], both[x]
                for o in range(channels_out):
                    dot = 4 * counts[o] - 2 * ones_x[x] - 2 * ones_w[o] + count
                    row[o] = row[o] + beta[k] * np.float32(dot)
        for o in range(channels_out):
            target = out[n, o, y]
            for x in range(width_out):
                target[x] = total[x, o] * scale[o] + bias[o]


def pack_kernels(signs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kernel signs (O, C, kh, kw) -> (ceil(O / BLOCK), kh * kw * words, BLOCK) uint64 and (O,) int64 set bits.

    Output channels are grouped :data:`BLOCK` to a block (zero kernels pad the last one),
    each block's words tap by tap, so :func:`binary_conv` reads a block as consecutive memory.
    """
    o, _, kh, kw = signs.shape
    blocks = -(-o // BLOCK)
    packed = pack_channels(signs >= 0)  # (O, kh, kw, words)
    words = packed.shape[-1]
    grouped = np.zeros((blocks * BLOCK, kh * kw * words), np.uint64)
    grouped[:o] = packed.reshape(o, -1)
    ones = (signs >= 0).reshape(o, -1).sum(axis=1).astype(np.int64)
    return np.ascontiguousarray(grouped.reshape(blocks, BLOCK, -1).transpose(0, 2, 1)), ones


def set_threads(count: int) -> None:
    """Run the kernels on ``count`` threads (at most the cores numba was started with)."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))


def kernel_path() -> str:
    """The instruction set the compiled popcount runs on here: ``avx512-vpopcntdq``, ``avx2``,
    ``popcnt`` or ``generic`` (numba's target; ``NUMBA_CPU_NAME=generic`` forces the last)."""
    import os

    import llvmlite.binding as llvm

    if os.environ.get("NUMBA_CPU_NAME", "host") != "host":
        return "generic"
    features = llvm.get_host_cpu_features()
    for name, flag in (("avx512-vpopcntdq", "avx512vpopcntdq"), ("avx2", "avx2"), ("popcnt", "popcnt")):
        if features.get(flag):
            return name
    return "generic"
