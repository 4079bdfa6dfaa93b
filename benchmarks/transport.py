"""Transport benchmark: what the broker costs per tile, and how fast tiles move through it.

With real processes on this host (ipc sockets): a broker and a *null* worker (answers each
tile with a ready-made RGB tile, no network), so only the transport is measured.

1. Throughput through the broker for 256 and 512 px RGBA tiles on the copy, zero-copy and
   shared-memory paths, ``--inflight`` requests outstanding.
2. Round trip per tile, one request at a time: the transport's overhead per tile, set
   against in-process inference of the same tile by the standard network and a small one.
3. A check end to end: the small network in this process and through a broker and a real
   worker process (``LocalCluster``), measured interleaved.

Writes ``transport.md``, ``transport.json`` and ``transport.png`` to ``--out``.

    python benchmarks/transport.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vrstyle.bench import environment
from vrstyle.timing import median
from vrstyle.transport import TileBatch, TransportClient
from vrstyle.transport.broker import Broker
from vrstyle.transport.datapath import NullEngine
from vrstyle.transport.worker import StyleWorker

PATHS = ("copy", "zerocopy", "shm")
SIZES = (256, 512)
NETWORKS = (("standard (width 32, 5 blocks)", {"width": 32, "blocks": 5}),
            ("small (width 8, 1 block)", {"width": 8, "blocks": 1}))


def serve_broker(clients: str, workers: str) -> None:
    stop = threading.Event()
    Broker(clients, workers).run(stop)


def serve_null(workers: str, credit: int) -> None:
    StyleWorker(workers, {"null": NullEngine()}, credit=credit, batch_window_s=0.0).run()


def pump(client: TransportClient, size: int, requests: int, inflight: int) -> dict:
    """Push ``requests`` single-tile requests of ``size`` px RGBA, ``inflight`` at a time."""
    tiles = np.random.default_rng(0).integers(0, 256, (inflight, 1, size, size, 4), dtype=np.uint8)
    outs = np.empty((inflight, 1, size, size, 3), np.uint8)
    free, slot_of = list(range(inflight)), {}
    sent = done = 0
    start = time.perf_counter()
    while done < requests:
        while sent < requests and free:
            slot = free.pop()
            slot_of[client.submit(TileBatch("null", tiles[slot], None, out=outs[slot]))] = slot
            sent += 1
        for reply in client.poll(10.0):
            assert reply.status == "ok", reply.message
            free.append(slot_of.pop(reply.request_id))
            done += 1
    elapsed = time.perf_counter() - start
    mb = tiles[0].nbytes / 1e6
    return {"size": size, "requests": requests, "inflight": inflight, "seconds": elapsed,
            "tiles_per_s": requests / elapsed, "ms_per_tile": 1e3 * elapsed / requests,
            "mb_per_s_in": requests * mb / elapsed, "mb_per_s_both_ways": requests * mb * 1.75 / elapsed}


def measure_transport(args) -> tuple[list[dict], list[dict]]:
    """(throughput rows, one-at-a-time round-trip rows) for every size and path, null worker."""
    with tempfile.TemporaryDirectory(prefix="vrstyle-bench-") as folder:
        return _measure_transport(args, f"ipc://{folder}/clients", f"ipc://{folder}/workers")


def _measure_transport(args, clients: str, workers: str) -> tuple[list[dict], list[dict]]:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=serve_broker, args=(clients, workers), daemon=True),
                 context.Process(target=serve_null, args=(workers, args.inflight), daemon=True)]
    for process in processes:
        process.start()
    flows, trips = [], []
    try:
        with TransportClient(clients, payload="copy") as probe:
            until = time.monotonic() + 60
            while not probe.status()["workers"]:
                if time.monotonic() > until:
                    raise SystemExit("null worker did not start")
                time.sleep(0.1)
        cases = [(size, path) for size in SIZES for path in PATHS]
        for size, path in tqdm(cases, desc="transport", unit="case"):
            with TransportClient(clients, payload=path) as client:
                pump(client, size, 20, args.inflight)  # warm-up: sockets, shm blocks, allocator
                best = lambda runs: min(runs, key=lambda row: row["seconds"])
                flows.append({"path": path, **best([pump(client, size, args.requests, args.inflight)
                                                    for _ in range(args.repeats)])})
                trips.append({"path": path, **best([pump(client, size, args.requests // 4, 1)
                                                    for _ in range(args.repeats)])})
    finally:
        for process in processes:
            process.terminate()
            process.join(5)
    return flows, trips


def measure_inference(args) -> list[dict]:
    """In-process inference per tile (RGB, as sent) for the standard and the small network."""
    import torch

    from vrstyle.models import StyleEngine, create_model

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rows = []
    for label, config in NETWORKS:
        engine = StyleEngine(create_model("johnson", **config))
        stats = np.stack([np.zeros(engine.stats_channels), np.ones(engine.stats_channels)]).astype(np.float32)
        for size in SIZES:
            tile = np.random.default_rng(1).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
            engine.stylize_and_measure(tile, stats, 0, 0)  # warm-up
            times = []
            for _ in tqdm(range(args.inference_reps), desc=f"{label} {size} px", unit="tile", leave=False):
                start = time.perf_counter()
                engine.stylize_and_measure(tile, stats, 0, 0)
                times.append(time.perf_counter() - start)
            rows.append({"network": label, "size": size, "ms_per_tile": 1e3 * median(times)})
    return rows


def measure_end_to_end(args) -> list[dict]:
    """The small network in process and through broker + worker processes, interleaved, 256 px."""
    import torch
    from safetensors.torch import save_file

    from vrstyle.models import StyleEngine, create_model
    from vrstyle.transport.cluster import LocalCluster
    from vrstyle.transport.local import LocalBackend

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    label, config = NETWORKS[1]
    net = create_model("johnson", **config)
    folder = tempfile.TemporaryDirectory(prefix="vrstyle-bench-")
    path = Path(folder.name) / "small.safetensors"
    save_file(net.state_dict(), str(path), metadata={"name": "bench", "arch": "johnson", "config": json.dumps(config)})
    engine = StyleEngine(net)
    stats = np.stack([np.zeros(engine.stats_channels), np.ones(engine.stats_channels)]).astype(np.float32)
    tile = np.random.default_rng(1).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    batch = TileBatch("bench", tile, stats)
    times: dict[str, list[float]] = {"in process": [], "shm": [], "zerocopy": []}
    with LocalCluster([str(path)], workers=1, threads=args.threads) as cluster, \
            cluster.client(payload="shm") as shm, cluster.client(payload="zerocopy") as zerocopy:
        backends = {"in process": LocalBackend(engine), "shm": shm, "zerocopy": zerocopy}
        for _ in tqdm(range(args.inference_reps * 4 + 1), desc="end to end", unit="round", leave=False):
            for name, backend in backends.items():
                start = time.perf_counter()
                backend.submit(batch)
                replies = backend.poll(60.0)
                assert replies and replies[0].status == "ok"
                times[name].append(time.perf_counter() - start)
    folder.cleanup()
    base = median(times["in process"][1:])
    return [{"network": label, "size": 256, "path": name, "ms_per_tile": 1e3 * median(values[1:]),
             "overhead_ms": 1e3 * (median(values[1:]) - base)} for name, values in times.items()]


def write_results(out: Path, command: str, flows: list[dict], trips: list[dict], inference: list[dict],
                  end_to_end: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    machine = environment(["cpu"])
    (out / "transport.json").write_text(json.dumps(
        {"command": command, "machine": machine, "throughput": flows, "round_trip": trips, "inference": inference,
         "end_to_end": end_to_end}, indent=2) + "\n")
    lines = ["# Transport benchmark", "", f"Command: `{command}`", "",
             f"Machine: {machine['cpu_count']} CPU cores, no GPU, load average "
             f"{', '.join(f'{v:.1f}' for v in machine['load_average'])} at the end (a shared machine: other jobs "
             "ran at the same time, so treat differences below ~20% as noise). Broker, worker and client are "
             "separate processes on ipc sockets. **GPU numbers are pending**: no GPU was available.", "",
             "## Throughput through the broker", "",
             "Null worker (answers with a ready-made RGB tile), single-tile requests of RGBA tiles, "
             f"{flows[0]['inflight']} in flight, results copied into client-owned arrays; best of the runs. "
             "At 256 px the per-request cost of the Python broker, worker and client, not the bytes, sets the "
             "rate, and on this shared machine it varied up to 2x between runs.", "",
             "| tile px | path | tiles/s | MB/s in | MB/s both ways |", "|---|---|---|---|---|"]
    for row in flows:
        lines.append(f"| {row['size']} | {row['path']} | {row['tiles_per_s']:.0f} | {row['mb_per_s_in']:.0f} | "
                     f"{row['mb_per_s_both_ways']:.0f} |")
    lines += ["", "## Round-trip overhead per tile vs in-process inference", "",
              "Transport round trip: one request at a time through broker and null worker (all the transport "
              "adds to a tile). Inference: the same tile size through the network in this process "
              "(`--threads` torch threads, default 1, as the worker), median.", "",
              "| tile px | path | round trip ms | vs standard net | vs small net |", "|---|---|---|---|---|"]
    infer = {(row["network"], row["size"]): row["ms_per_tile"] for row in inference}
    for row in trips:
        standard, small = (infer[(label, row["size"])] for label, _ in NETWORKS)
        lines.append(f"| {row['size']} | {row['path']} | {row['ms_per_tile']:.2f} | "
                     f"{100 * row['ms_per_tile'] / standard:.2f}% of {standard:.0f} ms | "
                     f"{100 * row['ms_per_tile'] / small:.1f}% of {small:.0f} ms |")
    lines += ["", "## End to end with a real worker (small network, 256 px, interleaved, median)", "",
              "| path | ms per tile | difference to in process ms |", "|---|---|---|"]
    for row in end_to_end:
        lines.append(f"| {row['path']} | {row['ms_per_tile']:.1f} | {row['overhead_ms']:+.1f} |")
    lines += ["", "With few cores the worker process competes with the client and other jobs for CPU, so this "
              "difference can exceed the transport round trip above, which isolates what the transport adds."]
    (out / "transport.md").write_text("\n".join(lines) + "\n")
    plot(out / "transport.png", flows)


def plot(path: Path, flows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.25
    for k, name in enumerate(PATHS):
        values = [next(r["mb_per_s_in"] for r in flows if r["size"] == size and r["path"] == name) for size in SIZES]
        ax.bar(np.arange(len(SIZES)) + (k - 1) * width, values, width, label=name)
    ax.set_xticks(np.arange(len(SIZES)), [f"{s} px RGBA" for s in SIZES])
    ax.set_ylabel("MB/s into the broker")
    ax.set_title("Tile throughput through the broker (null worker)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--requests", type=int, default=400, help="requests per throughput run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per transport case (the best is kept)")
    parser.add_argument("--inflight", type=int, default=4, help="requests outstanding in the throughput runs")
    parser.add_argument("--inference-reps", type=int, default=5, help="tiles timed per inference case")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in process and in the worker")
    args = parser.parse_args()
    command = ("python benchmarks/transport.py " + " ".join(sys.argv[1:])).strip()
    flows, trips = measure_transport(args)
    inference = measure_inference(args)
    end_to_end = measure_end_to_end(args)
    write_results(args.out, command, flows, trips, inference, end_to_end)
    print((args.out / "transport.md").read_text())


if __name__ == "__main__":
    main()
