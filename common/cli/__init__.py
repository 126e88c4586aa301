"""The ``nin`` console command."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from importlib import metadata

from nin_common.cli import options as O
from nin_common.engine import registry
from nin_common.engine.registry import BackendUnavailable
from nin_common.util.files import why
from nin_common.util.machine import thread_defaults

# subcommand -> its module in nin_common.cli
COMMANDS = ["summary", "train", "evaluate", "predict", "parity", "convert", "resources", "compare", "bench"]


def version() -> str:
    try:
        return metadata.version("nin")
    except metadata.PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    frameworks = ", ".join(entry.framework for entry in registry.REGISTERED)
    parser = O.Parser(prog="nin", description=f"Network in Network (D2L 8.3) in {frameworks}.")
    parser.add_argument("--version", action="version", version=f"nin {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"nin_common.cli.{name}").add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    thread_defaults()  # before any framework is imported (documented in docs/speed.md)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help/--version (0), or a bad option (2; argparse printed its one line)
        return int(done.code or 0)
    try:
        return int(args.run(args) or 0)
    except (BackendUnavailable, ValueError, FileNotFoundError) as err:
        print(f"nin {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file the system refused (permissions, a full disk): say which and why
        print(f"nin {args.command}: error: {why(err)}", file=sys.stderr)
        return 2

