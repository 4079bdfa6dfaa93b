"""The ZeroMQ transport with real sockets and real broker and worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from dataclasses import replace
from multiprocessing import resource_tracker
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import given, settings

import tiles
from test_protocol import SHM_BYTES, check_request, mutated, valid_requests
from vrstyle import settings as vrstyle_settings
from vrstyle.errors import VrstyleError
from vrstyle.normstats import combine_moments
from vrstyle.transport import codec
from vrstyle.transport import protocol as P
from vrstyle.transport import LocalBackend, TileBatch, TransportClient
from vrstyle.transport.broker import Broker
from vrstyle.transport.cluster import LocalCluster
from vrstyle.transport.jobs import Job, _joined, process
from vrstyle.transport.security import generate_keys, peer_keys, server_keys
from vrstyle.pipeline import FramePipeline
from vrstyle.transport.shm import Block, BlockPool, FrameRing, SegmentCache, _Attached, host_id
from vrstyle.transport.worker import StyleWorker

GRID = tiles.plan_grid(96, 128, tile=32, halo=8, overlap=4)
STYLE = "tiny"


def frame_tiles(seed: int, grid: tiles.TileGrid = GRID) -> np.ndarray:
    eyes = np.random.default_rng(seed).integers(0, 256, (2, grid.height, grid.width, 3), dtype=np.uint8)
    return tiles.cut(eyes, grid)


def stats_for(engine, pieces: np.ndarray) -> np.ndarray:
    return combine_moments([engine.measure(pieces, GRID.margin)])[1:].astype(np.float32)


def batches(pieces: np.ndarray, stats, size: int = 3, **options) -> list[TileBatch]:
    return [TileBatch(STYLE, pieces[i:i + size], stats, crop=GRID.halo, margin=GRID.margin, first_tile=i, **options)
            for i in range(0, len(pieces), size)]


def collect(client, count: int, timeout: float = 60.0) -> dict[int, P.Reply]:
    """Exactly ``count`` replies, each request id once."""
    replies: dict[int, P.Reply] = {}
    until = time.monotonic() + timeout
    while len(replies) < count:
        assert time.monotonic() < until, f"only {len(replies)} of {count} replies in {timeout} s"
        for reply in client.poll(1.0):
            assert reply.request_id not in replies, f"request {reply.request_id} answered twice"
            replies[reply.request_id] = reply
    return replies


def assert_like_in_process(engine, batch: TileBatch, reply: P.Reply) -> None:
    assert reply.status == "ok", reply.message
    expected, moments = engine.stylize_and_measure(batch.tiles[..., :3], batch.stats, batch.crop, batch.margin)
    np.testing.assert_array_equal(reply.tiles, expected)
    np.testing.assert_array_equal(reply.moments, combine_moments(moments))


def test_workers_times_clients_every_tile_once_bit_identical(cluster, tiny_engine):
    """3 clients at once on 2 workers; each client its own statistics (one without: first frame)."""
    sent: dict[int, dict[int, TileBatch]] = {}
    replies: dict[int, dict[int, P.Reply]] = {}

    def run_client(index: int) -> None:
        with cluster.client() as client:
            pieces = frame_tiles(index)
            stats = None if index == 0 else stats_for(tiny_engine, pieces) * (1 + 0.1 * index)
            mine = {client.submit(b): b for frame in range(3) for b in batches(pieces, stats, size=2 + index)}
            sent[index] = mine
            replies[index] = collect(client, len(mine))
            assert client.counters["stray_replies"] == 0

    threads = [threading.Thread(target=run_client, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(3):
        assert replies[index].keys() == sent[index].keys()
        for rid, batch in sent[index].items():
            assert_like_in_process(tiny_engine, batch, replies[index][rid])
    served = [w["served"] for w in cluster.status()["workers"]]
    assert len(served) == 2 and min(served) > 0, f"work was not shared: {served}"


def test_rgba_tiles_and_measure_requests(cluster, tiny_engine):
    pieces = frame_tiles(5)
    rgba = np.concatenate([pieces, np.full(pieces.shape[:-1] + (1,), 77, np.uint8)], axis=-1)
    with cluster.client() as client:
        stats = stats_for(tiny_engine, pieces)
        stylize = TileBatch(STYLE, rgba[:4], stats, crop=GRID.halo, margin=GRID.margin)
        measure = TileBatch(STYLE, rgba[:8], margin=GRID.margin, measure=True)
        ids = [client.submit(stylize), client.submit(measure)]
        got = collect(client, 2)
    assert_like_in_process(tiny_engine, TileBatch(STYLE, pieces[:4], stats, GRID.halo, GRID.margin), got[ids[0]])
    assert got[ids[1]].tiles is None
    np.testing.assert_array_equal(got[ids[1]].moments, tiny_engine.measure(pieces[:8], GRID.margin))


@pytest.mark.parametrize("payload", ["copy", "zerocopy", "shm", "auto"])
def test_payload_paths_give_identical_results(cluster, tiny_engine, payload):
    pieces = frame_tiles(7)
    stats = stats_for(tiny_engine, pieces)
    with cluster.client(payload=payload) as client:
        sent = {client.submit(b): b for b in batches(pieces, stats, size=4)}
        got = collect(client, len(sent))
        if payload == "auto":
            assert client._mode(STYLE) == "shm", "every worker is local: auto should pick shared memory"
        names = set(client._blocks._all) if client._blocks is not None else set()
    for rid, batch in sent.items():
        assert_like_in_process(tiny_engine, batch, got[rid])
    assert bool(names) == (payload in ("shm", "auto"))
    assert not [name for name in names if Path("/dev/shm", name).exists()], "segments left after close()"


def test_out_arrays_are_filled_in_place(cluster, tiny_engine):
    pieces = frame_tiles(8)
    out = np.zeros((4, *GRID.out_shape, 3), np.uint8)
    with cluster.client(payload="shm") as client:
        rid = client.submit(TileBatch(STYLE, pieces[:4], None, GRID.halo, GRID.margin, out=out))
        reply = collect(client, 1)[rid]
    assert reply.tiles is out
    expected, _ = tiny_engine.stylize_and_measure(pieces[:4], None, GRID.halo, GRID.margin)
    np.testing.assert_array_equal(out, expected)


def raw_socket(endpoint: str) -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.linger = 0
    socket.rcvtimeo = 10_000
    socket.connect(endpoint)
    return socket


def good_request(rid: int, **fields) -> list:
    pieces = frame_tiles(9)[:2]
    header = TileBatch(STYLE, pieces, None, GRID.halo, GRID.margin).header(rid)
    header = replace(header, **fields)
    return P.request_frames(header, pieces, None, None)


def malformed_messages() -> list[tuple[str, list, int]]:
    good = good_request(1)
    header = P.Header.unpack(good[0])
    stats = np.ones((2, 143), np.float32)
    with_stats = replace(header, flags=P.FLAG_STATS, stats_channels=143)
    oversize = replace(header, count=200, height=1024, width=1024, channels=4)
    unversioned = bytearray(good[0])
    unversioned[4] = P.VERSION + 1
    outside = np.tile(np.array([[999, 1000, 0, 10]], P.BOUNDS_DTYPE), (header.count, 1))
    return [
        ("garbage header", [b"hello", good[1]], P.Code.MALFORMED),
        ("unknown version", [bytes(unversioned), good[1]], P.Code.VERSION),
        ("truncated payload", [good[0], bytes(good[1])[:-10]], P.Code.PAYLOAD),
        ("wrong shape", [replace(header, width=40).pack(), good[1]], P.Code.PAYLOAD),
        ("wrong dtype", [replace(header, dtype=9).pack(), good[1]], P.Code.DTYPE),
        ("oversize", [oversize.pack(), good[1]], P.Code.LIMIT),
        ("too many parts", [*good, b"x"], P.Code.MALFORMED),
        ("unknown style", [replace(header, style="vangogh").pack(), good[1]], P.Code.STYLE),
        ("statistics of another model", [with_stats.pack(), good[1], stats], P.Code.STATS),
        ("bounds with no image in the tile", [replace(header, flags=P.FLAG_BOUNDS).pack(), good[1], outside],
         P.Code.PAYLOAD),
        ("a worker's message", [P.Header(P.Kind.READY).pack(), b"{}"], P.Code.KIND),
    ]


def test_malformed_messages_get_error_replies_and_are_counted(cluster, tiny_engine):
    before = cluster.status()["counters"].get("rejected", 0)
    socket = raw_socket(cluster.client_endpoint)
    messages = malformed_messages()
    with cluster.client() as client:
        for name, frames, code in messages:
            rid = client.submit(batches(frame_tiles(3), None)[0])  # a well-behaved client meanwhile
            socket.send_multipart(frames)
            reply = socket.recv_multipart()
            header = P.Header.unpack(reply[0])
            assert (header.kind, header.code) == (P.Kind.ERROR, code), f"{name}: {reply}"
            assert reply[1].startswith(b"broker: "), name
            assert_like_in_process(tiny_engine, batches(frame_tiles(3), None)[0], collect(client, 1)[rid])
    # The raw socket still gets served after all that.
    socket.send_multipart(good_request(99))
    reply = socket.recv_multipart()
    assert P.Header.unpack(reply[0]).kind == P.Kind.RESULT and P.Header.unpack(reply[0]).request_id == 99
    socket.close()
    counters = cluster.status()["counters"]
    assert counters["rejected"] - before == len(messages)
    assert counters.get("rejected_version", 0) >= 1 and counters.get("rejected_payload", 0) >= 2


def test_the_broker_answers_every_mutated_request_once_and_keeps_serving(cluster, tiny_engine):
    """Requests of every form made by the protocol's encoders, mutated (test_protocol's strategy),
    each from a socket of its own: exactly one reply, the decoder's own code for what it refuses,
    a result that decodes for what it accepts; a well-behaved client is served afterwards."""
    with BlockPool() as pool:
        block = pool.acquire(*SHM_BYTES)  # so that shared-memory requests reach real memory
        messages = valid_requests(STYLE, tiny_engine.stats_channels, host_id(), block.name)

        @settings(max_examples=150, deadline=None)
        @given(mutated(messages))
        def exchange(frames):
            try:
                kind = P.Header.unpack(frames[0]).kind
            except P.ProtocolError:
                kind = None
            refusal = check_request(frames)
            socket = raw_socket(cluster.client_endpoint)
            try:
                socket.send_multipart(frames)
                if kind == P.Kind.CANCEL:  # a notice, never answered: withdraws nothing of a new client
                    assert not socket.poll(100), "a reply to CANCEL"
                    return
                reply = socket.recv_multipart()  # raises zmq.Again after 10 s: no reply
                assert not socket.poll(50), "a second reply"
            finally:
                socket.close()
            got = P.Header.unpack(reply[0])
            if kind in (P.Kind.STATUS, P.Kind.HEARTBEAT):
                assert got.kind == kind
            elif refusal is not None:
                assert (got.kind, got.code) == (P.Kind.ERROR, refusal.code), reply[1:]
            elif got.kind == P.Kind.RESULT:
                P.parse_result(got, reply, P.parse_request(frames).header)
            else:
                assert got.kind in (P.Kind.ERROR, P.Kind.LOST) and got.code, got

        exchange()
    # A worker's message nested past the JSON parser used to kill the broker (RecursionError).
    impostor = zmq.Context.instance().socket(zmq.DEALER)
    impostor.linger = 0
    impostor.connect(cluster.worker_endpoint)
    impostor.send_multipart([P.Header(P.Kind.READY).pack(), b"[" * 60_000])
    with cluster.client() as client:
        # The impostor's socket stays open until the broker has read its message: the broker reads
        # the two sockets in no fixed order, and a closed socket may drop what it has not sent.
        deadline = time.monotonic() + 10
        while client.status()["counters"].get("worker_protocol_errors", 0) < 1:
            assert time.monotonic() < deadline, "the broker never counted the impostor's message"
            time.sleep(0.05)
        impostor.close()
        assert all(process.poll() is None for process in cluster.workers)
        rid = client.submit(batches(frame_tiles(4), None)[0])
        assert_like_in_process(tiny_engine, batches(frame_tiles(4), None)[0], collect(client, 1)[rid])


@contextlib.contextmanager
def worker_behind_a_test_socket(tiny_model: str, tmp_path: Path):
    """A real worker process connected to a broker socket of the test's own: yields the socket,
    the worker's identity and READY info once it has announced itself, and a list that holds the
    worker's stderr once it has been stopped."""
    context = zmq.Context.instance()
    broker = context.socket(zmq.ROUTER)
    broker.linger = 0
    endpoint = f"ipc://{tmp_path}/workers"
    broker.bind(endpoint)
    worker = subprocess.Popen([sys.executable, "-m", "vrstyle.cli", "worker", "--broker", endpoint, "--style",
                               tiny_model, "--threads", "1", "--heartbeat", "1"], stderr=subprocess.PIPE, text=True)
    try:
        assert broker.poll(60_000), "worker never announced itself"
        identity, header, info = broker.recv_multipart()
        assert P.Header.unpack(header).kind == P.Kind.READY
        log: list[str] = []
        yield broker, identity, P.parse_worker_info(info), log
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
        broker.close()
    assert worker.returncode == 0, err
    log.append(err)


def next_reply(broker: zmq.Socket) -> P.Header:
    """The worker's next message that is not a heartbeat."""
    while True:
        assert broker.poll(30_000), "no reply from the worker"
        parsed = P.Header.unpack(broker.recv_multipart()[1])
        if parsed.kind != P.Kind.HEARTBEAT:
            return parsed


def test_a_worker_refuses_bad_requests_and_keeps_serving(tiny_model, tiny_engine, tmp_path):
    with worker_behind_a_test_socket(tiny_model, tmp_path) as (broker, identity, info, log):
        assert info["styles"]["tiny"] == tiny_engine.stats_channels

        def exchange(frames: list) -> P.Header:
            broker.send_multipart([identity, P.Header(P.Kind.HEARTBEAT).pack()])
            broker.send_multipart([identity, *frames])
            return next_reply(broker)

        good = good_request(5)
        header = P.Header.unpack(good[0])
        shm_header = replace(header, flags=P.FLAG_SHM)
        missing = P.ShmDescriptor("vrs_0_nothere", 0, good[1].nbytes, good[1].nbytes,
                                  int(np.prod(header.out_shape)))
        for frames, code in [
            ([replace(header, style="vangogh").pack(), good[1]], P.Code.STYLE),
            ([replace(header, flags=P.FLAG_STATS, stats_channels=7).pack(), good[1],
              np.ones((2, 7), np.float32)], P.Code.STATS),
            ([good[0], bytes(good[1])[:100]], P.Code.PAYLOAD),
            ([b"\x00" * P.HEADER_STRUCT.size, good[1]], P.Code.MALFORMED),
            ([shm_header.pack(), missing.pack()], P.Code.SHM),
        ]:
            reply = exchange(frames)
            assert (reply.kind, reply.code) == (P.Kind.ERROR, code)
        expired = exchange(good_request(6, budget_us=1))
        assert (expired.kind, expired.code) == (P.Kind.LOST, P.Code.EXPIRED)
        assert exchange(good).kind == P.Kind.RESULT
    assert "rejected a request" in log[0] and "Traceback" not in log[0]


BIG = tiles.plan_grid(512, 512, tile=256, halo=8, overlap=4)
"""Tiles large enough that a request keeps a one-thread worker busy for a while."""


def test_a_worker_skips_a_cancelled_request_it_has_not_started(tiny_model, tmp_path):
    """While the worker computes a long request, a second arrives and is cancelled: it comes back
    LOST (cancelled) without being computed; the first is not affected."""
    pieces = frame_tiles(3, BIG)
    long = TileBatch(STYLE, pieces, None, BIG.halo, BIG.margin).header(1)
    with worker_behind_a_test_socket(tiny_model, tmp_path) as (broker, identity, _, _):
        broker.send_multipart([identity, *P.request_frames(long, pieces, None, None)])
        time.sleep(0.2)  # the compute thread has taken the long request
        broker.send_multipart([identity, *good_request(2)])
        broker.send_multipart([identity, P.Header(P.Kind.CANCEL, request_id=2).pack()])
        broker.send_multipart([identity, P.Header(P.Kind.CANCEL, request_id=99).pack()])  # unknown: harmless
        replies = {reply.request_id: reply for reply in (next_reply(broker), next_reply(broker))}
    assert replies[1].kind == P.Kind.RESULT
    assert (replies[2].kind, replies[2].code) == (P.Kind.LOST, P.Code.CANCELLED)


def test_a_cancelled_frame_is_withdrawn_from_the_broker_queue_and_the_rest_still_served(cluster):
    """Two workers hold two requests each; the rest of the frame waits in the broker's queue.
    Cancelling the frame answers every request exactly once: LOST (cancelled) for all that no
    worker had started, a result for the others; the broker counts what it withdrew."""
    pieces = frame_tiles(4, BIG)
    with cluster.client() as client:
        before = client.status()["counters"]
        ids = [client.submit(batch) for batch in batches(pieces, None, size=1, frame_id=7)]
        client.cancel(7)
        replies = collect(client, len(ids))
        after = client.status()["counters"]
        cancelled = [r for r in replies.values() if r.status == "lost" and r.code == P.Code.CANCELLED]
        assert len(cancelled) >= len(ids) - 2 * 2 - 2  # at most what the workers held (and were handed) ran
        assert all(r.status == "ok" for r in replies.values() if r not in cancelled)
        withdrawn = sum(after.get(k, 0) - before.get(k, 0) for k in ("cancelled", "cancelled_by_workers"))
        assert withdrawn == len(cancelled) and client.counters["cancels_sent"] == 1
        rid = client.submit(batches(pieces, None, size=1, frame_id=8)[0])
        assert collect(client, 1)[rid].status == "ok"


def test_killed_worker_loses_no_tile_and_a_restarted_one_rejoins(tiny_model, tiny_engine):
    grid = tiles.plan_grid(256, 256, tile=128, halo=24, overlap=8)
    pieces = frame_tiles(11, grid)  # 8 tiles of 192 px: slow enough to catch a worker mid-batch
    stats = combine_moments([tiny_engine.measure(pieces, grid.margin)])[1:].astype(np.float32)
    make = lambda deadline=None: [TileBatch(STYLE, pieces[i:i + 1], stats, grid.halo, grid.margin, first_tile=i,
                                            deadline_s=deadline) for i in range(len(pieces))]
    with LocalCluster([tiny_model], workers=2, heartbeat_s=0.5, threads=1) as cluster, cluster.client() as client:
        # A frame in flight; SIGKILL whichever worker holds part of it.
        sent = {client.submit(b): b for b in make() * 2}
        victim = _kill_a_busy_worker(cluster)
        got = collect(client, len(sent))
        for rid, batch in sent.items():
            assert_like_in_process(tiny_engine, batch, got[rid])
        assert any(reply.redispatched for reply in got.values())
        counters = cluster.status()["counters"]
        assert counters["redispatched"] >= 1 and counters["workers_died"] >= 1 and counters.get("lost", 0) == 0

        # The supervisor restarts it; it rejoins and gets work.
        stop = threading.Event()
        supervisor = threading.Thread(target=cluster.supervise, args=(stop, 0.1))
        supervisor.start()
        try:
            cluster.wait_for_workers(2)
        finally:
            stop.set()
            supervisor.join()
        new_pid = cluster.worker_pid(victim)
        sent = {client.submit(b): b for b in make() * 2}
        for rid, reply in collect(client, len(sent)).items():
            assert_like_in_process(tiny_engine, sent[rid], reply)
        served = {w["pid"]: w["served"] for w in cluster.status()["workers"]}
        assert served.get(new_pid, 0) > 0, served

        # No worker left to finish them in time: every request still comes back, LOST at its deadline.
        sent = {client.submit(b): b for b in make(deadline=2.0) * 3}
        _kill_a_busy_worker(cluster)
        for index in range(len(cluster.workers)):
            cluster.kill_worker(index)
        got = collect(client, len(sent))
        assert {r.status for r in got.values()} <= {"ok", "lost"}
        lost = [r for r in got.values() if r.status == "lost"]
        assert lost and {r.code for r in lost} <= {P.Code.WORKER_DIED, P.Code.EXPIRED}


def _kill_a_busy_worker(cluster: LocalCluster) -> int:
    until = time.monotonic() + 30
    while time.monotonic() < until:
        busy = [w["pid"] for w in cluster.status()["workers"] if w["outstanding"] > 0]
        pids = {cluster.worker_pid(i): i for i, p in enumerate(cluster.workers) if p is not None}
        for pid in busy:
            if pid in pids:
                cluster.kill_worker(pids[pid])
                return pids[pid]
        time.sleep(0.005)
    raise AssertionError("no worker was ever busy")


def test_requests_past_their_deadline_come_back_lost(cluster):
    with cluster.client() as client:
        rid = client.submit(batches(frame_tiles(1), None, deadline_s=1e-6)[0])
        reply = collect(client, 1)[rid]
    assert (reply.status, reply.code) == ("lost", P.Code.EXPIRED)


def test_a_silent_broker_means_lost_requests_not_a_hang(tmp_path):
    with TransportClient(f"ipc://{tmp_path}/nobody", payload="copy", heartbeat_s=0.1) as client:
        with pytest.raises(VrstyleError, match="no answer from the broker"):
            client.status(timeout=0.3)
        rid = client.submit(batches(frame_tiles(1), None)[0])
        reply = collect(client, 1, timeout=10)[rid]
    assert (reply.status, reply.code) == ("lost", P.Code.BROKER_GONE)


def test_curve_refuses_a_wrong_key_and_accepts_the_right_one(tiny_model, tiny_engine, tmp_path):
    generate_keys(tmp_path / "keys")
    generate_keys(tmp_path / "other", ("client",))
    broker = Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", heartbeat_s=0.25, keys=server_keys(tmp_path / "keys"),
                    context=zmq.Context())
    stop = threading.Event()
    thread = threading.Thread(target=broker.run, args=(stop,))
    thread.start()
    worker = subprocess.Popen([sys.executable, "-m", "vrstyle.cli", "worker", "--broker", broker.worker_endpoint,
                               "--style", tiny_model, "--threads", "1", "--heartbeat", "0.25", "--curve",
                               str(tmp_path / "keys")], stderr=subprocess.PIPE, text=True)
    try:
        right = peer_keys(tmp_path / "keys", "client")
        with TransportClient(broker.client_endpoint, keys=right, heartbeat_s=0.25) as client:
            until = time.monotonic() + 60
            while not client.status()["workers"]:
                assert time.monotonic() < until and worker.poll() is None, "worker never joined"
                time.sleep(0.1)
            rid = client.submit(batches(frame_tiles(2), None)[0])
            assert_like_in_process(tiny_engine, batches(frame_tiles(2), None)[0], collect(client, 1)[rid])
        # A client key the broker never authorised (with the right broker key): refused.
        other = peer_keys(tmp_path / "other", "client")
        intruder = type(right)(other.public, other.secret, right.server_public)
        with TransportClient(broker.client_endpoint, keys=intruder) as client:
            with pytest.raises(VrstyleError, match="refused this end's CURVE key: it is not among the broker's"):
                client.status(timeout=10)
        # No keys at all: said at once, on both sides (was: "no answer ... is the broker running?" after 10 s).
        with TransportClient(broker.client_endpoint) as client:
            start = time.monotonic()
            with pytest.raises(VrstyleError, match="uses CurveZMQ keys and this end none: pass --curve DIR"):
                client.status(timeout=10)
            assert time.monotonic() - start < 5
        until = time.monotonic() + 10
        while broker.counters["refused_handshakes"] < 2 and time.monotonic() < until:
            time.sleep(0.05)
        assert broker.counters["refused_handshakes"] >= 2  # the intruder and the keyless client, each logged
        # A worker without keys: one line and exit 2 (was: "broker silent; reconnecting" forever).
        keyless = subprocess.run([sys.executable, "-m", "vrstyle.cli", "worker", "--broker", broker.worker_endpoint,
                                  "--style", tiny_model, "--threads", "1"], capture_output=True, text=True, timeout=120)
        assert keyless.returncode == 2, keyless.stderr
        assert keyless.stderr.strip().splitlines()[-1].startswith("vrstyle worker: error: the broker at ")
        assert "uses CurveZMQ keys and this end none: pass --curve DIR" in keyless.stderr
        # Keys against a broker without them: the client is told it may be that, the broker says it is.
        plain = Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", heartbeat_s=0.25, context=zmq.Context())
        plain_stop = threading.Event()
        plain_thread = threading.Thread(target=plain.run, args=(plain_stop,))
        plain_thread.start()
        try:
            with TransportClient(plain.client_endpoint, keys=right) as client:
                with pytest.raises(VrstyleError, match=r"(drop --curve|was the broker started with --curve)"):
                    client.status(timeout=10)
            until = time.monotonic() + 10
            while not plain.counters["refused_handshakes"] and time.monotonic() < until:
                time.sleep(0.05)
            assert plain.counters["refused_handshakes"] >= 1
        finally:
            plain_stop.set()
            plain_thread.join()
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
        stop.set()
        thread.join()


def test_shm_segments_are_removed_when_the_client_is_killed(cluster):
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        from vrstyle.transport import TransportClient, TileBatch
        client = TransportClient({cluster.client_endpoint!r}, payload="shm")
        tiles = np.zeros((2, 48, 48, 3), np.uint8)
        client.submit(TileBatch("tiny", tiles, None, 8, 12))
        client.poll(30)
        print(*client._blocks._all, flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    names = process.stdout.readline().split()
    assert names and all(Path("/dev/shm", name).exists() for name in names)
    process.kill()
    process.wait()
    until = time.monotonic() + 20
    while any(Path("/dev/shm", name).exists() for name in names):
        assert time.monotonic() < until, "segments outlived their killed client"
        time.sleep(0.1)


def test_client_broker_and_pipeline_run_without_torch(cluster):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import numpy as np
        import vrstyle.pipeline, vrstyle.transport.broker, vrstyle.transport.cluster, vrstyle.transport.worker
        import vrstyle.commands.broker, vrstyle.commands.keys
        from vrstyle.pipeline import FramePipeline
        from vrstyle.transport import TransportClient
        with TransportClient({cluster.client_endpoint!r}) as client:
            pipe = FramePipeline.plan(client, 64, 96, "tiny", tile=32, halo=8, overlap=4, deadline_s=None)
            result = pipe.process(np.zeros((2, 64, 96, 4), np.uint8))
        assert result.complete and result.stitched().shape == (2, 64, 96, 3)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_host_ids_agree_between_processes():
    other = subprocess.run([sys.executable, "-c", "from vrstyle.transport.shm import host_id; print(host_id())"],
                           capture_output=True, text=True, check=True)
    assert int(other.stdout) == host_id() != 0


# One lifecycle: every owner closes twice, and a constructor failing half-way frees what it made.
# Processes and shared memory are counted, sockets through zmq_ctx_term (which waits for every one).


def children() -> set[int]:
    """Pids of this process's children, zombies included, from /proc."""
    me, pids = str(os.getpid()), set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if fields[1] == me:
            pids.add(int(stat.parent.name))
    return pids


def my_segments() -> set[str]:
    """This process's segments in /dev/shm (blocks are named after their creator's pid)."""
    return {name for name in os.listdir("/dev/shm") if name.startswith(f"vrs_{os.getpid():x}_")}


def assert_sockets_closed(context: zmq.Context) -> None:
    """Terminating a context returns only once every socket made in it is closed. (Callers keep
    the traceback of a failed constructor, and so its half-built object, alive meanwhile: pyzmq
    would close an unreferenced object's sockets by itself.)"""
    ender = threading.Thread(target=context.term, daemon=True)
    ender.start()
    ender.join(10)
    assert not ender.is_alive(), "a socket was left open"


def test_a_sigterm_while_a_block_is_made_leaks_no_segment(monkeypatch):
    """The command's SIGTERM handler raises in the main thread, which may be inside Block():
    after the segment exists and before the pool holds it. Closing the pool still unlinks it."""
    from multiprocessing.shared_memory import SharedMemory

    import vrstyle.transport.shm as shm

    made = []

    def interrupted(self, in_bytes, out_bytes, name):
        made.append(SharedMemory(name=name, create=True, size=64))
        raise KeyboardInterrupt

    before = my_segments()
    pool = BlockPool()
    monkeypatch.setattr(shm.Block, "__init__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pool.acquire(32, 32)
    assert len(my_segments() - before) == 1 and pool.segments == 0
    pool.close()
    made[0].close()
    assert my_segments() == before


def test_every_transport_owner_closes_twice_and_frees_what_it_held(tiny_model, tiny_engine):
    resource_tracker.ensure_running()  # a child from the first segment on, for good
    context = zmq.Context()
    before, segments = children(), my_segments()
    client = TransportClient("tcp://127.0.0.1:1", payload="shm", context=context)
    client.submit(batches(frame_tiles(1), None)[0])  # a block of shared memory, queued for nobody
    pool = BlockPool()
    pool.retire(pool.acquire(10, 10))
    pool.release(pool.acquire(100, 10))
    block = Block(64, 64, f"vrs_{os.getpid():x}_test")
    cache = SegmentCache()
    cache.views(block.descriptor(), (1, 8, 8, 1), None)
    worker = StyleWorker("tcp://127.0.0.1:1", {STYLE: tiny_engine}, context=context)
    cluster = LocalCluster([tiny_model], workers=0, heartbeat_s=0.5).start()
    owners = [client, Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", context=context), worker,
              LocalBackend(tiny_engine), cluster, pool, cache, _Attached(block.name), block]
    assert len(my_segments() - segments) == 3 and len(children() - before) == 1
    for owner in owners:
        owner.close()
        owner.close()
        assert owner.closed, owner
    assert_sockets_closed(context)
    assert not worker._compute.is_alive()
    assert children() == before and not cluster.folder.exists()
    assert my_segments() == segments


def test_a_broker_whose_second_bind_fails_leaves_no_socket_open(tmp_path):
    generate_keys(tmp_path)
    context = zmq.Context()
    with pytest.raises(VrstyleError, match="cannot listen on bogus://x") as caught:
        Broker("tcp://127.0.0.1:*", "bogus://x", keys=server_keys(tmp_path), context=context)
    assert_sockets_closed(context)  # the first socket, and the authenticator's
    del caught


def test_a_client_that_cannot_connect_leaves_no_socket_open(tmp_path):
    generate_keys(tmp_path)
    context = zmq.Context()
    with pytest.raises(VrstyleError, match="cannot connect to broker at nonsense") as caught:
        TransportClient("nonsense", keys=peer_keys(tmp_path, "client"), payload="shm", context=context)
    assert_sockets_closed(context)  # the socket and its monitor
    del caught


def test_a_worker_whose_compute_thread_cannot_start_leaves_no_socket_open(tiny_engine, monkeypatch):
    def refuse(thread):
        raise RuntimeError("can't start new thread")

    context = zmq.Context()
    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="can't start new thread") as caught:
            StyleWorker("tcp://127.0.0.1:1", {STYLE: tiny_engine}, context=context)
    assert_sockets_closed(context)
    del caught


def test_a_cluster_whose_worker_cannot_start_leaves_no_process_and_no_folder(tiny_model):
    before = children()
    cluster = LocalCluster([tiny_model], workers=1, heartbeat_s=0.5, worker_args=["--credit", "0"])
    with pytest.raises(VrstyleError, match="worker0 exited during startup: .*must be at least 1"):
        cluster.start()
    assert children() == before and not cluster.folder.exists()


def test_a_block_that_cannot_be_made_leaves_no_segment():
    before = my_segments()
    with BlockPool() as pool:
        with pytest.raises(OSError):
            pool.acquire(1 << 62, 0)
        assert pool.segments == 0
    assert my_segments() == before


def test_frames_through_the_ring_are_the_in_process_frames(cluster, tiny_engine):
    """Frames copied once into ring slots, tiles cut by the workers: bit-identical to the same
    pipeline in this process, RGB and RGBA, first frame (joint statistics) and later ones."""
    frames = [np.random.default_rng(seed).integers(0, 256, (2, GRID.height, GRID.width, 3), np.uint8)
              for seed in range(4)]
    frames[3] = np.concatenate([frames[3], np.full(frames[3].shape[:3] + (1,), 255, np.uint8)], axis=-1)
    with cluster.client() as client:
        remote = FramePipeline(client, GRID, STYLE, deadline_s=None)
        # The first frame's batches normalise with their own statistics: batch alike to compare.
        local = FramePipeline(tiny_engine, GRID, STYLE, deadline_s=None, request_tiles=ring_request_tiles(GRID))
        for frame in frames:
            got, expected = remote.process(frame), local.process(frame)
            assert got.complete
            np.testing.assert_array_equal(got.tiles, expected.tiles)
        assert remote.counters["ring_frames"] == 3  # the RGBA frame would need a ring of its own: pixels
        per_frame = -(-2 * len(GRID) // ring_request_tiles(GRID))
        assert client.counters["sent"] == 3 * per_frame + -(-2 * len(GRID) // vrstyle_settings.REQUEST_TILES)


def test_frames_put_straight_into_a_ring_slot_are_not_copied_and_give_the_same_tiles(cluster, tiny_engine):
    """A frame read into frame_buffer() goes out without a copy, rows top-down or bottom-up (as
    GL reads textures: the workers cut from the rows reversed); the tiles equal those of the
    same frame copied in. Other pixels submitted after an offer let its slot go."""
    frames = [np.random.default_rng(seed).integers(0, 256, (2, GRID.height, GRID.width, 3), np.uint8)
              for seed in range(4)]
    local = FramePipeline(tiny_engine, GRID, STYLE, deadline_s=None, request_tiles=ring_request_tiles(GRID))
    expected = [local.process(frame).tiles for frame in frames]
    with cluster.client() as client:
        remote = FramePipeline(client, GRID, STYLE, deadline_s=None)
        buffer = remote.frame_buffer(3)
        buffer[...] = frames[0]
        got = [remote.process(buffer).tiles.copy()]
        buffer = remote.frame_buffer(3)
        buffer[...] = frames[1][:, ::-1]  # bottom-up, as glGetTexImage writes rows
        got.append(remote.process(buffer[:, ::-1]).tiles.copy())
        remote.frame_buffer(3)
        got.append(remote.process(frames[2]).tiles.copy())  # other pixels: copied in as usual
        assert remote.frame_buffer(4) is None  # the ring is for RGB frames
        got.append(remote.process(frames[3]).tiles.copy())
        assert (remote.counters["ring_frames"], remote.counters["ring_frames_in_place"]) == (4, 2)
        assert remote._ring.busy.count(0) == len(remote._ring.busy) - 1  # only the last result holds a slot
    for frame_tiles, want in zip(got, expected):
        np.testing.assert_array_equal(frame_tiles, want)


def test_skipped_tiles_stay_out_of_ring_requests(cluster, tiny_engine):
    """A frame on the ring with tiles skipped: only the runs of the others are requested, and
    they are the tiles the in-process pipeline gives with the same statistics."""
    frame = np.random.default_rng(9).integers(0, 256, (2, GRID.height, GRID.width, 3), np.uint8)
    stats = FramePipeline(tiny_engine, GRID, STYLE, deadline_s=None)
    stats.process(frame)
    skip = np.zeros(2 * len(GRID), bool)
    skip[len(GRID) + 1:] = True  # all of the right eye but its first tile
    with cluster.client() as client:
        remote = FramePipeline(client, GRID, STYLE, deadline_s=None, stats=stats.stats)
        got = remote.result(remote.submit(frame, skip=skip))
        assert remote.counters["ring_frames"] == 1 and got.complete
        wanted = int((~skip).sum())
        assert client.counters["sent"] == -(-wanted // max(vrstyle_settings.REQUEST_TILES,
                                                             -(-wanted // vrstyle_settings.RING_REQUESTS)))
    expected = FramePipeline(tiny_engine, GRID, STYLE, deadline_s=None, stats=stats.stats).process(frame)
    np.testing.assert_array_equal(got.tiles[~skip], expected.tiles[~skip])
    np.testing.assert_array_equal(got.skipped, np.flatnonzero(skip))


def ring_request_tiles(grid: tiles.TileGrid) -> int:
    """Tiles per request of a stereo frame on the ring (the pipeline's rule)."""
    return max(vrstyle_settings.REQUEST_TILES, -(-2 * len(grid) // vrstyle_settings.RING_REQUESTS))


def ring_request(rid: int, spec: P.FrameSpec, descriptor: P.ShmDescriptor, frame_id: int, first: int = 0,
                 count: int = 2, frame_part: bytes | None = None) -> list:
    header = P.FrameBatch(STYLE, spec, 3, first, count, frame_id).header(rid, host_id())
    frames = P.request_frames(header, None, None, descriptor, frame=spec)
    if frame_part is not None:
        frames[2] = frame_part
    return frames


def test_ring_requests_that_do_not_fit_get_one_error_reply_each(cluster, tiny_engine):
    """Tiles outside the frame and a grid that does not tile it (refused by the broker), a ring
    that does not exist and a slot holding another frame (refused by the worker): one ERROR
    each, and the same socket is served afterwards, the slot's output holding the tiles."""
    spec = P.FrameSpec(2, GRID)
    eyes = np.random.default_rng(6).integers(0, 256, (2, GRID.height, GRID.width, 3), np.uint8)
    with BlockPool() as pool:
        ring = FrameRing(pool, spec, 3, slots=2)
        slot = ring.acquire()
        ring.fill(slot, 5, eyes)
        good = ring.blocks[slot].descriptor()
        missing = replace(good, name="vrs_0_nothere")
        bad_grid = P.FRAME_STRUCT.pack(2, GRID.height, GRID.width, GRID.core_h, GRID.core_w, GRID.rows + 1, GRID.cols,
                                       GRID.halo, GRID.overlap)
        socket = raw_socket(cluster.client_endpoint)
        for frames, code, words in [
            (ring_request(1, spec, good, 5, first=2 * len(GRID) - 1), P.Code.PAYLOAD, "outside the frame"),
            (ring_request(2, spec, good, 5, frame_part=bad_grid), P.Code.PAYLOAD, "do not tile"),
            (ring_request(3, spec, missing, 5), P.Code.SHM, "does not exist"),
            (ring_request(4, spec, good, 6), P.Code.SHM, "holds frame 5, not 6"),
        ]:
            socket.send_multipart(frames)
            reply = socket.recv_multipart()
            header = P.Header.unpack(reply[0])
            assert (header.kind, header.code) == (P.Kind.ERROR, code) and words in reply[1].decode(), reply[1]
        socket.send_multipart(ring_request(5, spec, good, 5, first=3, count=4))
        header = P.Header.unpack(socket.recv_multipart()[0])
        socket.close()
        assert header.kind == P.Kind.RESULT
        expected, _ = tiny_engine.stylize_and_measure(tiles.cut(eyes, GRID)[3:7], None, GRID.halo, GRID.margin,
                                                      np.tile(GRID.bounds(), (2, 1))[3:7])
        np.testing.assert_array_equal(ring.output(slot)[3:7], expected)


def test_a_worker_reports_a_slot_overwritten_while_it_read_it(tiny_model, tmp_path):
    """The stamp is read before cutting and after inference: a client that refills the slot
    meanwhile gets an error, not tiles of two frames."""
    spec = P.FrameSpec(2, BIG)
    eyes = np.random.default_rng(7).integers(0, 256, (2, BIG.height, BIG.width, 3), np.uint8)
    with BlockPool() as pool, worker_behind_a_test_socket(tiny_model, tmp_path) as (broker, identity, _, _):
        ring = FrameRing(pool, spec, 3, slots=1)
        slot = ring.acquire()
        ring.fill(slot, 9, eyes)
        broker.send_multipart([identity, *ring_request(1, spec, ring.blocks[slot].descriptor(), 9, count=8)])
        time.sleep(0.05)
        ring.blocks[slot].input((P.STAMP_BYTES,))[:8].view("<i8")[0] = 10
        reply = next_reply(broker)
    assert (reply.kind, reply.code) == (P.Kind.ERROR, P.Code.SHM)


def test_a_workers_batch_is_cut_end_to_end_and_shares_a_forward_pass_uncopied(tiny_engine):
    """Requests batched together are cut into consecutive tiles of one reused arena, so the
    engine takes them as one view of it (a copy would move tens of MB a batch at a headset's
    tiles); a batch past the arena's size gets a larger one and is joined by copying."""
    with StyleWorker("tcp://127.0.0.1:1", {STYLE: tiny_engine}, max_batch_tiles=4) as worker:
        used: Counter[tuple[int, ...]] = Counter()
        parts = [worker._cut_buffer((2, 8, 8, 3), used) for _ in range(2)]
        joined = _joined(parts)
        assert joined.shape == (4, 8, 8, 3) and all(np.shares_memory(joined, part) for part in parts)
        assert np.shares_memory(worker._cut_buffer((2, 8, 8, 3), Counter()), parts[0])  # the next batch reuses it
        used.clear()
        parts = [worker._cut_buffer((3, 8, 8, 3), used) for _ in range(2)]
        joined = _joined(parts)
        assert joined.shape == (6, 8, 8, 3) and not any(np.shares_memory(joined, part) for part in parts)


def test_requests_batched_into_one_pass_report_that_pass_once(tiny_engine):
    """Requests a worker batches share one forward pass: each reports its time and the pass's
    tiles, so a frame's inference (the mirror's "x inference") adds that pass once, not twice."""
    pieces = frame_tiles(8)
    stats = stats_for(tiny_engine, pieces)
    jobs = [Job(batch.header(i + 1), batch.tiles, stats) for i, batch in enumerate(batches(pieces[:7], stats, size=4))]
    outcomes = process(tiny_engine, jobs)
    assert [o.pass_tiles for o in outcomes] == [7, 7] and outcomes[0].infer_s == outcomes[1].infer_s > 0
    for job, outcome in zip(jobs, outcomes):
        result = P.result_frames(job.header, outcome.tiles, outcome.moments, 0, 1000, outcome.pass_tiles)
        assert P.Header.unpack(result[0]).pass_tiles == 7


def test_a_ring_slot_is_reused_only_when_nothing_holds_it():
    spec = P.FrameSpec(1, tiles.plan_grid(16, 16, tile=8, halo=2, overlap=0))
    eyes = np.zeros((1, 16, 16, 3), np.uint8)
    with BlockPool() as pool:
        ring = FrameRing(pool, spec, 3, slots=2)
        first, second = ring.acquire(), ring.acquire()
        assert {first, second} == {0, 1} and ring.acquire() is None  # both held: no slot
        ring.hold(first)  # a request outstanding
        ring.release(first)  # the frame is done with it, the request is not
        assert ring.acquire() is None
        ring.release(first)
        name = ring.blocks[first].name
        ring.retire(first)
        assert ring.blocks[first].name != name and ring.acquire() == first
        assert int(ring.blocks[first].input((8,)).view("<i8")[0]) == -1  # being filled: no frame's yet
        ring.fill(first, 4, eyes)
        assert ring.frame(first).shape == (1, 16, 16, 3)
        assert int(ring.blocks[first].input((8,)).view("<i8")[0]) == 4


@pytest.mark.parametrize("compress", ["zstd", "jpeg"])
def test_compressed_tiles_through_the_broker(cluster, tiny_engine, compress):
    """Tiles sent as pixels, compressed each way: zstd gives the in-process tiles bit for bit;
    JPEG moves far fewer bytes and returns the tiles of its decoded input."""
    y, x = np.mgrid[:GRID.height, :GRID.width]
    smooth = np.stack([128 + 100 * np.sin(x / 9 + c) * np.cos(y / 13 - c) for c in range(3)], -1)
    pieces = tiles.cut(np.stack([smooth, smooth[:, ::-1]]).astype(np.uint8), GRID)  # a photo-like frame
    stats = stats_for(tiny_engine, pieces)
    with cluster.client(payload="zerocopy", compress=compress, quality=90) as client:
        sent = batches(pieces, stats)
        replies = collect(client, len([client.submit(batch) for batch in sent]))
        raw_bytes = pieces.nbytes
        assert all(reply.status == "ok" for reply in replies.values())
        got = np.concatenate([replies[rid].tiles for rid in sorted(replies)])
        if compress == "zstd":
            expected = np.concatenate([tiny_engine.stylize_and_measure(b.tiles, b.stats, b.crop, b.margin)[0]
                                       for b in sent])
            np.testing.assert_array_equal(got, expected)
        else:
            assert client.counters["pixel_bytes_sent"] < raw_bytes / 3
            jpeg_in = np.concatenate([codec.decode(*codec.encode(b.tiles, "jpeg", 90), "jpeg", b.tiles.shape)
                                      for b in sent])
            expected = tiny_engine.stylize_and_measure(jpeg_in, stats, GRID.halo, GRID.margin)[0]
            error = np.abs(got.astype(int) - expected).mean()
            assert error < 4, error  # only the result's own JPEG pass apart


def test_compressed_tiles_that_do_not_decode_get_an_error_reply(cluster):
    header = replace(P.Header.unpack(good_request(3)[0]), flags=P.FLAG_JPEG)
    sizes, blob = codec.encode(frame_tiles(9)[:2], "jpeg")
    socket = raw_socket(cluster.client_endpoint)
    try:
        for parts, code, words in [
            ([sizes, blob[:-10]], P.Code.PAYLOAD, "do not describe"),  # the broker checks the sizes
            ([sizes, b"\xff" * len(blob)], P.Code.PAYLOAD, "does not decode"),  # the worker decodes
        ]:
            socket.send_multipart([header.pack(), *parts])
            reply = socket.recv_multipart()
            got = P.Header.unpack(reply[0])
            assert (got.kind, got.code) == (P.Kind.ERROR, code) and words in reply[1].decode(), reply[1]
        socket.send_multipart(good_request(4))
        assert P.Header.unpack(socket.recv_multipart()[0]).kind == P.Kind.RESULT
    finally:
        socket.close()
