"""``nin resources``: parameters, multiply-adds and memory of a NiN (exercise 4), checked per backend."""
from __future__ import annotations

import json
import sys
from typing import Dict, List, Optional

from rich import box
from rich.console import Console
from rich.table import Table

from nin_common.engine import registry
from nin_common.arch import costs as C
from nin_common.tools import resources as R
from nin_common.arch.checks import check_input_shape
from nin_common.arch.shapes import batch_shape
from nin_common.arch.variants import build_spec, default_input
from nin_common.cli import options as O
from nin_common.util.tables import first_fitting, fits

TOLERANCE = 0.25  # measured memory must be within this of the analytic figure


def add_parser(sub) -> None:
    p = O.subcommand(sub, "resources", "parameters, multiply-adds and memory (training, prediction), computed "
                                       "from the spec and checked in each backend")
    O.backend(p)
    O.variant(p)
    O.image_size(p, default=None, help="images are resized to this (default: the variant's: 224; 32 for cifar10)")
    O.shape(p, in_channels=None)
    O.batch_size(p)
    p.add_argument("--optimizer", default="sgd", choices=list(C.OPTIMIZERS),
                   help="optimizer state: sgd keeps none, momentum one buffer per parameter, adam two")
    p.add_argument("--measure", action="store_true",
                   help="also measure a training step and a prediction in each backend (a fresh process each)")
    O.json_output(p)
    p.set_defaults(run=run)


def backend_checks(names: List[str], spec, args, measure: bool) -> Dict[str, dict]:
    """Per backend: the framework's parameter count, the modeled prediction memory, and measurements."""
    out = {}
    kwargs = dict(num_classes=args.num_classes, in_channels=args.in_channels, variant=args.variant,
                  image_size=args.image_size, seed=0)
    analytic = C.memory(spec, args.image_size, args.batch_size, args.optimizer)
    for name in names:
        mod = registry.load(name)
        measuring = registry.part(name, "resources")
        model = mod.NiN(**kwargs)
        params = mod.num_params(model)
        live = C.peak_live(spec, args.image_size, measuring.EXECUTION) * args.batch_size * C.BYTES
        predict = analytic.params + live
        row = dict(params=params, params_match=params == analytic.params // C.BYTES,
                   modeled=dict(live=live, predict=predict), execution=vars(measuring.EXECUTION).copy(), measured=None)
        if measure:
            m = R.measure_in_subprocess(name, kwargs, args.batch_size, args.image_size, args.optimizer)
            row["measured"] = dict(m.as_dict(), train_error=R.relative_error(m.train, analytic.train),
                                   predict_error=R.relative_error(m.predict, predict))
            row["within_tolerance"] = max(row["measured"]["train_error"], row["measured"]["predict_error"]) <= TOLERANCE
        out[name] = row
    return out


def run(args) -> int:
    names = args.backend
    channels, size = default_input(args.variant)
    args.in_channels = channels if args.in_channels is None else args.in_channels
    args.image_size = size if args.image_size is None else args.image_size
    spec = build_spec(args.variant, args.num_classes, args.in_channels)
    check_input_shape(spec, batch_shape("NCHW", 1, args.in_channels, args.image_size), "NCHW")
    C.check_options(args.batch_size, args.optimizer)
    for name in names:  # fail early, naming the extra to install
        registry.load(name)
    res = C.resources(spec, args.image_size, args.batch_size, args.optimizer, variant=args.variant)
    try:
        checks = backend_checks(names, spec, args, args.measure)
    except RuntimeError as err:  # a measurement failed in its own process
        print(f"nin resources: error: {err}", file=sys.stderr)
        return 2
    ok = all(c["params_match"] and c.get("within_tolerance", True) for c in checks.values())
    if args.json:
        print(json.dumps(dict(res.as_dict(), batch_size=args.batch_size, optimizer=args.optimizer,
                              tolerance=TOLERANCE, backends=checks, ok=ok), indent=1))
    else:
        show(res, checks, args)
    return 0 if ok else 1


def show(res: C.Resources, checks: Dict[str, dict], args, console: Optional[Console] = None) -> None:
    console = console or Console()  # the terminal's width (80 columns when not a terminal, or $COLUMNS)
    console.print(first_fitting(console, layer_table(res), layer_table(res, compact=True)))
    counts = ", ".join(f"{registry.framework(n)} {c['params']:,} {'(matches)' if c['params_match'] else '(DIFFERS)'}"
                       for n, c in checks.items())
    console.print(f"Parameters counted by the frameworks: {counts}.")
    console.print(f"Multiply-adds per batch of {args.batch_size}: {res.totals['macs_per_batch']:,} "
                  f"(forward; a training step is about three times that).")
    m = res.memory
    title = f"Memory, batch {args.batch_size}, float32, optimizer {args.optimizer}"
    for table in memory_tables(console, title, m, checks):
        console.print(table)
    if not args.measure:
        console.print("Add --measure to measure a training step and a prediction in each backend.")
    else:
        for name, c in checks.items():
            verdict = "within" if c["within_tolerance"] else "NOT within"
            console.print(f"{name}: measured {verdict} {TOLERANCE:.0%} of the figures ({c['measured']['how']}).")
    console.print("Definitions: common/resources.py and docs/exercises.md.")


def layer_table(res: C.Resources, compact: bool = False) -> Table:
    """Per layer: output shape, parameters, multiply-adds, activations; ``compact`` (for 80 columns) draws no
    vertical lines and writes shapes without spaces."""
    t = Table(title=f"NiN ({res.variant}): {res.in_channels}x{res.image_size}x{res.image_size} input, per image",
              box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD, show_edge=not compact, pad_edge=not compact)
    output = "output (C,H,W)" if compact else "output (C, H, W)"
    for col in ("#", "layer", output, "parameters", "multiply-adds", "activations"):
        t.add_column(col, justify="left" if col in ("layer", output) else "right")
    shape = (lambda s: str(s).replace(" ", "")) if compact else str
    for row in res.layers:
        t.add_row(str(row.index), row.name, shape(row.out_shape), f"{row.params:,}", f"{row.macs:,}",
                  f"{row.activations:,}")
    t.add_row("", "total", "", f"{res.totals['params']:,}", f"{res.totals['macs']:,}",
              f"{res.totals['activations']:,}", end_section=True)
    return t


def memory_cells(checks: Dict[str, dict], key: str, sep: str) -> List[str]:
    """Per backend: the modeled figure and the measured one (with its error), joined by ``sep``."""
    out = []
    for c in checks.values():
        modeled = C.human(c["modeled"][key]) if key in c["modeled"] else ""
        measured = c["measured"]
        if measured is None or key not in measured:
            out.append(modeled)
            continue
        err = measured.get(f"{key}_error")
        shown = C.human(measured[key]) + (f" ({err:+.0%})" if err is not None else "")
        out.append(sep.join(x for x in (modeled, shown) if x))
    return out


def memory_table(title: str, m, checks: Dict[str, dict], compact: bool = False) -> Table:
    """The analytic memory and, per backend, the modeled / measured figures; ``compact`` (for 80 columns) wraps
    the labels, stacks each backend's figures and draws no vertical lines."""
    mem = Table(title=title, box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD, show_edge=not compact,
                pad_edge=not compact)
    mem.add_column("", max_width=16 if compact else None)
    mem.add_column("analytic", justify="right")
    for name in checks:
        mem.add_column(f"{name}\nmodeled /\nmeasured" if compact else f"{name} modeled / measured", justify="right")
    sep = " /\n" if compact else " / "
    rows = [("parameters", m.params, "params"), ("gradients", m.grads, "grads"),
            ("optimizer state", m.optimizer_state, "state"),
            ("activations kept for backward", m.activations_kept, "kept"), ("training", m.train, "train"),
            ("training step peak (measured)", None, "step"), ("peak live activations", m.peak_activations, "live"),
            ("prediction", m.predict, "predict")]
    for label, value, key in rows:
        mem.add_row(label, "" if value is None else C.human(value), *memory_cells(checks, key, sep),
                    end_section=label in ("training step peak (measured)",))
    return mem


def memory_tables(console: Console, title: str, m, checks: Dict[str, dict]) -> List[Table]:
    """One table if it fits the console, else compact ones, each with as many backends as fit."""
    whole = memory_table(title, m, checks)
    if fits(console, whole):
        return [whole]
    groups = [[]]  # backends per compact table
    for name in checks:
        wider = {n: checks[n] for n in groups[-1] + [name]}
        if groups[-1] and not fits(console, memory_table(title, m, wider, compact=True)):
            groups.append([])
        groups[-1].append(name)
    return [memory_table(title, m, {n: checks[n] for n in group}, compact=True) for group in groups]
