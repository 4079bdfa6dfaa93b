"""The CUDA worker path: fp16, channels-last, torch.compile with CUDA graphs, warmed up before READY."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tiles
from vrstyle.models import StyleEngine, resolve_model
from vrstyle.pipeline import FramePipeline
from vrstyle.transport.cluster import LocalCluster

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

GRID = tiles.plan_grid(64, 96, tile=32, halo=8, overlap=4)


def test_compiled_fp16_engine_matches_eager_fp16(tiny_model):
    eager = StyleEngine(resolve_model(tiny_model).load(), "cuda", half=True, channels_last=True)
    compiled = StyleEngine(resolve_model(tiny_model).load(), "cuda", half=True, channels_last=True, compile=True)
    compiled.warmup(GRID.in_shape, 4, GRID.halo, GRID.margin)
    pieces = tiles.cut(np.random.default_rng(0).integers(0, 256, (2, 64, 96, 4), dtype=np.uint8), GRID)[:3]
    stats = np.stack([np.full(eager.stats_channels, 10.0), np.full(eager.stats_channels, 400.0)]).astype(np.float32)
    for given in (stats, None):
        a, ma = eager.stylize_and_measure(pieces, given, GRID.halo, GRID.margin)
        b, mb = compiled.stylize_and_measure(pieces, given, GRID.halo, GRID.margin)  # 3 tiles: padded to 4
        assert a.shape == b.shape == (3, *GRID.out_shape, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
        np.testing.assert_allclose(ma, mb, rtol=2e-2, atol=1e-2)


def test_a_cuda_worker_serves_frames_close_to_the_cpu(tiny_model, tiny_engine):
    worker_args = ["--warmup", f"{GRID.in_shape[1]}x{GRID.in_shape[0]}", "--halo", str(GRID.halo), "--overlap",
                   str(GRID.overlap)]
    eyes = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    with LocalCluster([tiny_model], workers=1, devices=["cuda:0"], worker_args=worker_args) as cluster, \
            cluster.client() as client:
        remote = FramePipeline(client, GRID, "tiny", deadline_s=None)
        local = FramePipeline(tiny_engine, GRID, "tiny", deadline_s=None)
        for _ in range(3):
            a, b = local.process(eyes), remote.process(eyes)
            assert b.complete
            assert np.abs(a.tiles.astype(int) - b.tiles.astype(int)).mean() < 1.0
