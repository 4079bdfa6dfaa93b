"""The headless tile-throughput benchmark behind ``vrstyle bench`` and ``benchmarks/tile_throughput.py``.

Stereo frames of a headset's eye size go through the real pipeline: cut into tiles, sent
through a broker to style worker processes (started here with
:class:`~vrstyle.transport.cluster.LocalCluster`, or those of ``--broker``), stitched on the
CPU. In the same run the same model runs in this process (a) on whole frames and (b) on the
same tiles without transport, so what tiling and transport cost are ratios measured side by
side. A list of worker counts is a sweep with scaling efficiency.

Frames go ``depth`` at a time (closed loop: as fast as they come back), or at ``rate`` Hz
(open loop: a headset's frame clock), optionally with a deadline after which missing tiles
are filled in (fallbacks), as the headset client does.

One module per job: :mod:`~vrstyle.bench.config` (what to measure, checked first),
:mod:`~vrstyle.bench.runs` (measuring and summarising) and :mod:`~vrstyle.bench.report`
(environment, table, files, plots).
"""

from vrstyle.bench.config import STAGES, BenchConfig, check
from vrstyle.bench.report import environment, table, write_outputs
from vrstyle.bench.runs import load_frames, run_benchmark

__all__ = ["STAGES", "BenchConfig", "check", "environment", "load_frames", "run_benchmark", "table", "write_outputs"]
