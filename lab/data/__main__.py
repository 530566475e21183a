"""`python -m lab.data fetch mnist|fashion_mnist|all [--root DIR] [--source ...]`."""

from __future__ import annotations

import argparse
import logging
import sys

from lab.data.fetch import SOURCES, SPECS, DataFetchError, fetch
from lab.paths import default_data_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download (or take from offline mirrors) and verify a dataset")
    f.add_argument("dataset", choices=[*SPECS, "seq_mnist", "all"])
    f.add_argument("--root", default=str(default_data_dir()), help="data root (default: %(default)s)")
    f.add_argument("--source", action="append", choices=SOURCES,
                   help="sources to try, in order (default: all of them: present, torchvision, offline)")
    f.add_argument("--timeout", type=float, default=10.0, help="network timeout for torchvision's mirrors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = list(SPECS) if args.dataset == "all" else [args.dataset]
    try:
        for name in names:
            path = fetch(name, args.root, tuple(args.source or SOURCES), args.timeout)
            print(f"{name}: ok ({path})")
    except DataFetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
