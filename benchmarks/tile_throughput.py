"""Headless tile-throughput benchmark: the same as ``vrstyle bench`` (see ``--help``).

    python benchmarks/tile_throughput.py --eye-size 512x512 --style candy/binary --workers 1,2 --frames 10 \
        --out benchmarks/results --name tile-throughput-cpu
"""

from __future__ import annotations

import sys

from vrstyle.cli import main

if __name__ == "__main__":
    verbosity = [arg for arg in sys.argv[1:] if arg in ("-v", "-vv", "--verbose")]
    sys.exit(main([*verbosity, "bench", *[arg for arg in sys.argv[1:] if arg not in verbosity]]))
