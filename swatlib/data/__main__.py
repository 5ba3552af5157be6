"""Command line: ``python -m swatlib.data ensure NAME [NAME ...]`` (used by ``make data``).

Exits 0 when every dataset is available, 1 with a one-line ``error:`` naming the fix otherwise.
"""

from __future__ import annotations

import argparse
import sys

from swatlib.data import DATASETS, ensure
from swatlib.data.provision import CORPORA
from swatlib.data.errors import CorruptDataError, DatasetNotFoundError


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m swatlib.data", description="Make swatlib's datasets available."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ensure_parser = commands.add_parser("ensure", help="install or download datasets if missing")
    ensure_parser.add_argument(
        "names", nargs="+", choices=(*DATASETS, *CORPORA), metavar="NAME",
        help=", ".join((*DATASETS, *CORPORA))
    )
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            ensure(name)
    except (DatasetNotFoundError, CorruptDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
