"""The frame pipeline: statistics carried across frames, deadlines and fallbacks, local == remote."""

from __future__ import annotations

import numpy as np
import pytest

import tiles
from tiles import GridError
from vrstyle import settings as vrstyle_settings
from vrstyle.normstats import moments_to_stats
from vrstyle.pipeline import FramePipeline
from vrstyle.stylize import measure_stats, stylize_image
from vrstyle.transport import LocalBackend
from vrstyle.transport import protocol as P

GRID = tiles.plan_grid(64, 96, tile=32, halo=8, overlap=4)


def eyes(seed: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (2, 64, 96, channels), dtype=np.uint8)


def test_statistics_converge_to_the_joint_statistics_of_the_frame(tiny_engine):
    """Each frame is normalised with what the previous one measured; on a still scene that reaches
    the joint full-resolution capture of every tile core (one more layer exact per frame)."""
    pipe = FramePipeline(tiny_engine, GRID, "tiny", momentum=0.0, deadline_s=None)
    frame = eyes(0)
    first = pipe.process(frame)
    assert first.stats is None and first.complete
    for _ in range(8):
        result = pipe.process(frame)
    bounds = np.tile(GRID.bounds(), (2, 1))
    joint = moments_to_stats(tiny_engine.measure(tiles.cut(frame, GRID), GRID.margin, bounds))
    np.testing.assert_allclose(result.stats, joint, rtol=2e-3, atol=1e-3)
    expected, _ = tiny_engine.stylize_and_measure(tiles.cut(frame, GRID), result.stats, GRID.halo, GRID.margin,
                                                  bounds)
    np.testing.assert_array_equal(result.tiles, expected)


def test_statistics_are_smoothed_over_frames(tiny_engine):
    pipe = FramePipeline(tiny_engine, GRID, "tiny", momentum=0.5, deadline_s=None)
    measured = []
    for seed in range(3):
        pipe.process(eyes(seed))
        measured.append(pipe.stats)
    assert not np.allclose(measured[1], measured[2])
    # the third frame's own measurement, blended half and half with the past
    third = FramePipeline(tiny_engine, GRID, "tiny", stats=measured[1], momentum=0.0, deadline_s=None)
    third.process(eyes(2))
    np.testing.assert_allclose(measured[2], 0.5 * measured[1] + 0.5 * third.stats, rtol=1e-6)


def test_rgba_frames_ignore_alpha_and_stitch_like_the_tiles_library(tiny_engine):
    rgb = FramePipeline(tiny_engine, GRID, "tiny").process(eyes(1))
    rgba_frame = eyes(1, 4)
    rgba_frame[..., :3] = eyes(1)
    rgba = FramePipeline(tiny_engine, GRID, "tiny").process(rgba_frame)
    np.testing.assert_array_equal(rgb.tiles, rgba.tiles)
    np.testing.assert_array_equal(rgba.stitched(), tiles.stitch(rgba.tiles, GRID))
    assert rgba.stitched().shape == (2, 64, 96, 3) and rgba.timings.stitch > 0
    timings = rgb.timings
    assert min(timings.split, timings.send, timings.total, timings.requests.inference) > 0
    requests = -(-2 * len(GRID) // vrstyle_settings.REQUEST_TILES)  # the frame's work: every request's pass
    assert timings.inference == pytest.approx(requests * timings.requests.inference)
    assert sum(timings.critical_path().values()) <= timings.total + timings.send


class Unreliable:
    """A real in-process backend whose replies are held back, failed or lost for chosen tiles."""

    def __init__(self, engine, withhold=(), fail=(), lose=()):
        self.inner = LocalBackend(engine)
        self.withhold, self.fail, self.lose = set(withhold), set(fail), set(lose)
        self.pending = 0
        self.cancelled = []

    def submit(self, batch):
        return self.inner.submit(batch)

    def cancel(self, frame_id):
        self.cancelled.append(frame_id)

    def poll(self, timeout=0.0):
        out = []
        for reply in self.inner.poll():
            if reply.first_tile in self.withhold:
                continue
            if reply.first_tile in self.fail:
                reply = P.Reply(reply.request_id, "error", reply.frame_id, reply.first_tile, reply.count,
                                code=P.Code.WORKER, message="worker failed: boom")
            elif reply.first_tile in self.lose:
                reply = P.Reply(reply.request_id, "lost", reply.frame_id, reply.first_tile, reply.count,
                                code=P.Code.WORKER_DIED, message="worker died")
            out.append(reply)
        return out

    def status(self, timeout=None):
        return self.inner.status()

    def close(self):
        self.closes = getattr(self, "closes", 0) + 1


def test_missing_tiles_are_filled_from_the_previous_frame_else_raw_never_black(tiny_engine):
    backend = Unreliable(tiny_engine, withhold={0}, fail={2}, lose={4})
    pipe = FramePipeline(backend, GRID, "tiny", request_tiles=2, deadline_s=0.05)
    frame = np.full((2, 64, 96, 3), 200, np.uint8)  # flat: a raw fallback tile is exactly 200
    first = pipe.process(frame)
    assert set(first.fallback) == {0, 1, 2, 3, 4, 5}
    assert {i: (f.reason, f.source) for i, f in first.fallback.items()} == {
        0: ("late", "raw"), 1: ("late", "raw"), 2: ("error", "raw"), 3: ("error", "raw"), 4: ("lost", "raw"),
        5: ("lost", "raw")}
    assert "boom" in first.fallback[2].message
    assert (first.tiles[:6] == 200).all() and (first.tiles[6:] != 200).any()
    # Next frame: tile 0 is late again but had no stylised version; tiles that made it last time
    # stand in for themselves when they go missing.
    backend.withhold, backend.fail, backend.lose = {0, 6}, set(), set()
    second = pipe.process(frame)
    assert {i: f.source for i, f in second.fallback.items()} == {0: "raw", 1: "raw", 6: "previous", 7: "previous"}
    np.testing.assert_array_equal(second.tiles[6:8], first.tiles[6:8])
    assert pipe.counters["late"] == 2 + 4 and pipe.counters["error"] == 2 and pipe.counters["lost"] == 2
    assert backend.cancelled == [first.frame_id, second.frame_id]  # the late requests are withdrawn
    assert pipe.counters["cancelled_requests"] == 1 + 2


def test_a_superseded_frame_is_cancelled_and_a_complete_one_is_not(tiny_engine):
    backend = Unreliable(tiny_engine, withhold={0})
    pipe = FramePipeline(backend, GRID, "tiny", request_tiles=2, deadline_s=None, depth=1)
    old = pipe.submit(eyes(0))
    new = pipe.submit(eyes(1))  # depth 1: the first frame is dropped
    assert backend.cancelled == [old] and pipe.in_flight == [new]
    assert not pipe.result(new, timeout=0.05).complete  # given up on: its missing request is withdrawn
    assert backend.cancelled == [old, new]
    backend.withhold = set()
    assert pipe.process(eyes(2)).complete and backend.cancelled == [old, new]  # nothing left to withdraw


def test_a_frames_own_deadline_leaves_the_pipelines_alone(tiny_engine):
    backend = Unreliable(tiny_engine, withhold={0})
    pipe = FramePipeline(backend, GRID, "tiny", request_tiles=2, deadline_s=None)
    late = pipe.result(pipe.submit(eyes(0), deadline_s=0.01))
    assert set(late.fallback) == {0, 1} and pipe.deadline_s is None
    pipe.hold(5)
    pipe.hold(2)
    assert pipe.depth == 5


def test_the_pipeline_closes_its_backend_once(tiny_engine):
    backend = Unreliable(tiny_engine)
    with FramePipeline(backend, GRID, "tiny") as pipe:
        pipe.process(eyes(0))
    pipe.close()
    assert backend.closes == 1 and pipe.closed


def test_stale_frames_are_dropped_by_frame_id(tiny_engine):
    backend = Unreliable(tiny_engine)
    pipe = FramePipeline(backend, GRID, "tiny", depth=2)
    ids = [pipe.submit(eyes(i)) for i in range(3)]
    assert pipe.in_flight == ids[1:] and pipe.counters["dropped_frames"] == 1
    with pytest.raises(KeyError, match="not in flight"):
        pipe.result(ids[0])
    assert pipe.result(ids[2]).frame_id == ids[2]
    assert pipe.in_flight == [] and pipe.counters["dropped_frames"] == 2
    with pytest.raises(ValueError, match="not above"):
        pipe.submit(eyes(0), frame_id=1)
    assert pipe.submit(eyes(0), frame_id=10) == 10


@pytest.mark.parametrize("frame,message", [
    (np.zeros((2, 64, 96, 3), np.float32), "uint8"),
    (np.zeros((1, 64, 96, 3), np.uint8), r"\(2, 64, 96"),
    (np.zeros((2, 64, 95, 3), np.uint8), r"\(2, 64, 96"),
    (np.zeros((2, 64, 96, 2), np.uint8), "3|4"),
])
def test_frames_that_do_not_fit_are_refused(tiny_engine, frame, message):
    with pytest.raises(GridError, match=message):
        FramePipeline(tiny_engine, GRID, "tiny").submit(frame)


def test_local_and_remote_pipelines_give_identical_frames(cluster, tiny_engine):
    with cluster.client() as client:
        remote = FramePipeline(client, GRID, "tiny", deadline_s=None, request_tiles=3)
        local = FramePipeline(tiny_engine, GRID, "tiny", deadline_s=None, request_tiles=3)
        for seed in range(3):
            a, b = local.process(eyes(seed)), remote.process(eyes(seed))
            assert a.complete and b.complete
            np.testing.assert_array_equal(a.tiles, b.tiles)
            if seed:
                np.testing.assert_array_equal(a.stats, b.stats)
        # several frames in flight at once
        ids = [remote.submit(eyes(seed)) for seed in range(2)]
        assert [remote.result(i).complete for i in ids] == [True, True]


def test_a_missed_deadline_through_the_broker_falls_back_and_ignores_late_replies(cluster):
    with cluster.client() as client:
        pipe = FramePipeline(client, GRID, "tiny", deadline_s=0.002)
        result = pipe.process(eyes(3))
        assert result.fallback and {f.reason for f in result.fallback.values()} <= {"late", "lost"}
        before = result.tiles.copy()
        pipe.submit(eyes(4))
        for _ in range(20):  # late replies (results or LOST) for the first frame arrive meanwhile
            pipe.ready(1)
            if client.pending == 0:
                break
            client.poll(0.1)
        np.testing.assert_array_equal(result.tiles, before)


def test_single_image_path_is_the_same_in_process_and_remote(cluster, tiny_engine, tiny_model):
    image = np.random.default_rng(5).integers(0, 256, (70, 110, 3), dtype=np.uint8)
    grid = tiles.plan_grid(70, 110, tile=32, halo=8, overlap=4)
    with cluster.client() as client:
        np.testing.assert_array_equal(measure_stats(client, image, grid, style="tiny"),
                                      measure_stats(tiny_engine, image, grid))
        remote = stylize_image(client, image, grid, batch=3, style=tiny_model)
    np.testing.assert_array_equal(remote, stylize_image(tiny_engine, image, grid, batch=2))


def test_an_image_that_fits_goes_whole_in_one_pass_as_the_plain_network(tiny_engine, monkeypatch):
    """Within the memory budget: one piece, no halo, one request, the plain network's output exactly."""
    import torch

    from vrstyle.stylize import plan_image

    image = np.random.default_rng(5).integers(0, 256, (60, 84, 3), dtype=np.uint8)
    plan = plan_image(60, 84, memory_bytes=1e9)
    assert plan.whole and (plan.grid.rows, plan.grid.cols, plan.grid.halo) == (1, 1, 0)
    backend = LocalBackend(tiny_engine)
    sent = []
    submit = backend.submit
    monkeypatch.setattr(backend, "submit", lambda batch: sent.append(batch) or submit(batch))
    out = stylize_image(backend, image, plan.grid)
    assert len(sent) == 1 and sent[0].stats is None  # no separate statistics pass
    with torch.no_grad():
        plain = tiny_engine.model(torch.from_numpy(image).permute(2, 0, 1)[None].float())
    np.testing.assert_array_equal(out, plain[0].clamp(0, 255).round().byte().permute(1, 2, 0).numpy())


def test_an_image_over_the_budget_is_tiled_as_many_a_pass_as_fit():
    from vrstyle import settings
    from vrstyle.stylize import plan_image

    tile_cost = (512 + 2 * (settings.HALO + settings.OVERLAP)) ** 2 * settings.FORWARD_BYTES_PER_PIXEL
    plan = plan_image(3000, 4000, memory_bytes=2.5 * tile_cost)
    assert not plan.whole and plan.grid.halo == settings.HALO
    assert (plan.batch, plan.stats_tiles) == (2, 2)
    assert plan_image(3000, 4000, memory_bytes=1.0).batch == 1  # never less than one tile
    assert plan_image(600, 800, memory_bytes=1e12, tile=256).grid.cols == 4  # a given tile is kept


def test_skipped_tiles_are_not_stylised_and_filled_like_fallbacks(tiny_engine):
    """Tiles the caller skips are never requested; the result lists them apart from fallbacks and
    fills them from the previous frame's tile, else the raw input; the rest are the tiles of a run
    without skipping."""
    frame = eyes(3)
    warm = FramePipeline(tiny_engine, GRID, "tiny", deadline_s=None)
    warm.process(frame)
    whole = FramePipeline(tiny_engine, GRID, "tiny", stats=warm.stats).process(frame)
    pipe = FramePipeline(tiny_engine, GRID, "tiny", stats=warm.stats)
    skip = np.zeros(2 * len(GRID), bool)
    skip[[len(GRID), len(GRID) + 1, 2 * len(GRID) - 1]] = True
    first = pipe.result(pipe.submit(frame, skip=skip))
    np.testing.assert_array_equal(first.skipped, np.flatnonzero(skip))
    assert not first.fallback and pipe.counters["skipped_tiles"] == 3
    np.testing.assert_array_equal(first.tiles[~skip], whole.tiles[~skip])
    raw = tiles.crop_halo(tiles.cut(frame, GRID), GRID)
    np.testing.assert_array_equal(first.tiles[skip], raw[skip])
    previous = pipe.process(frame).tiles.copy()  # every tile stylised: the next skipped ones come from here
    again = pipe.result(pipe.submit(frame, skip=skip))
    np.testing.assert_array_equal(again.tiles[skip], previous[skip])
    assert not (again.tiles[skip] == raw[skip]).all()
    everything = pipe.result(pipe.submit(frame, skip=np.ones_like(skip)))
    assert everything.complete and len(everything.skipped) == len(skip)
    with pytest.raises(GridError, match="skip must be"):
        pipe.submit(frame, skip=skip[1:])
