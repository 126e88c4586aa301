"""The ``nin`` console command."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from common.engine.registry import BackendUnavailable
from common.util.files import why
from common.util.machine import thread_defaults

# subcommand -> module in common.commands
COMMANDS = ["summary", "train", "evaluate", "parity", "convert", "resources", "compare", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nin", description="Network in Network (D2L 8.3) in PyTorch, "
                                                             "MXNet and TensorFlow.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"common.cli.{name}").add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    thread_defaults()  # before any framework is imported (documented in the README's Speed section)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (BackendUnavailable, ValueError, FileNotFoundError) as err:
        print(f"nin {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file the system refused (permissions, a full disk): say which and why
        print(f"nin {args.command}: error: {why(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
