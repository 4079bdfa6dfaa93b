"""Make CurveZMQ key pairs for a broker reachable beyond this host.

Creates DIR/broker.key(_secret) once and a pair per --name (default: client and worker),
each public key authorised in DIR/authorized/. Give a peer its own .key_secret file and
broker.key; start the broker with --curve DIR.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="where to write the keys")
    parser.add_argument("--name", action="append", default=[],
                        help="a peer (client or worker) to make a key pair for; repeatable (default: client, worker)")


def run(args: argparse.Namespace) -> int:
    from vrstyle.transport.security import generate_keys

    written = generate_keys(args.directory, tuple(args.name))
    for path in written:
        print(path)
    return 0
