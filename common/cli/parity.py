"""``nin parity``: same weights, same numbers? Backends against each other and the float64 reference."""
from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from nin_common.arch.config import model_config
from nin_common.cli import options as O
from nin_common.engine import registry
from nin_common.tools import onnx_graph, parity
from nin_common.tools.parity import dataparallel


def add_parser(sub) -> None:
    p = O.subcommand(sub, "parity", "check that the backends give the same outputs, gradients and training "
                                    "losses for the same weights (and match a float64 NumPy reference)")
    O.backend(p, help="backends to compare")
    O.image_size(p, default=None, help=f"images are resized to this (default: {QUICK['image_size']}, the "
                                       f"smallest the network takes; --full: {FULL['image_size']}, the chapter's; "
                                       f"with --workers: {dataparallel.DEFAULTS['image_size']})")
    O.batch_size(p, default=None, help="images per batch of the checks (default: 4; with --workers: the global "
                                       f"batch, {dataparallel.DEFAULTS['batch']})")
    O.seed(p, help="seed of the weights and the batches")
    p.add_argument("--checks", default=",".join(parity.CHECKS),
                   help=f"comma list among {', '.join(parity.CHECKS)}")
    O.lr(p)
    p.add_argument("--steps", type=O.positive_int, default=None,
                   help=f"SGD steps of the steps check (default: {QUICK['steps']}; --full: {FULL['steps']})")
    p.add_argument("--full", action="store_true",
                   help=f"the full check: {FULL['image_size']}x{FULL['image_size']} images (the chapter's) and "
                        f"{FULL['steps']} SGD steps; minutes on a CPU. Without it the check answers in about a "
                        "minute")
    O.init(p, default="kaiming")
    O.variant(p)
    O.shape(p)
    p.add_argument("--grad-dtype", default="both", choices=parity.GRAD_DTYPES,
                   help="precision of the grads and steps checks: float64 compares the backends with each other "
                        "(to 1e-4; they agree to ~1e-14); float32 checks each backend's float32 loss, gradients, step "
                        "and trajectory against its own float64 copy, within a bound measured from how far float64 "
                        "moves when the weights move by one float32 ulp; both does both. Forward and layers always run "
                        "in float32 (default: both)")
    p.add_argument("--no-onnx", action="store_true",
                   help="leave out ONNX Runtime (by default, when onnx and onnxruntime are installed, the graph "
                        "'nin convert --to onnx' writes is run in ONNX Runtime and checked against the reference "
                        "in the forward and layers checks)")
    p.add_argument("--workers", type=O.positive_int, metavar="N",
                   help="instead: the data-parallel check. SGD steps (--steps, default "
                        f"{dataparallel.DEFAULTS['steps']} here) on N workers through each framework's engine against "
                        "the same steps on the whole batches in one process, dropout off, in float64 (to 1e-10) and "
                        "float32 (within twice what a float32 rounding path costs, measured)")
    O.progress(p)
    p.add_argument("--tolerance-scale", type=O.positive_float, default=1.0,
                   help="multiply every tolerance (e.g. 100 to see TF32 on a GPU pass)")
    p.set_defaults(run=run)


# the defaults answer in about a minute on a 2-core CPU; --full is the chapter's size, for minutes
QUICK = dict(image_size=67, steps=10, batch_size=4)
FULL = dict(image_size=224, steps=20, batch_size=4)
PRECISION_TEXT = {"float64": "in float64", "float32": "in float32 against float64",
                  "both": "in float64 and float32"}


def _num(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3g}"


def run(args) -> int:
    if args.workers is not None:
        return run_workers(args)
    for name, value in (FULL if args.full else QUICK).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    names = args.backend
    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    parity.check_request(names, checks, args.grad_dtype)
    # the network's arguments first (one line, the same as a backend's), then the frameworks: a bad request is
    # answered as such wherever a framework is missing
    model_config(variant=args.variant, num_classes=args.num_classes, in_channels=args.in_channels, init=args.init,
                 image_size=args.image_size, seed=args.seed)
    mods = [registry.load(n) for n in names]  # fail early, naming the framework to install
    with_onnx = not args.no_onnx and bool(set(checks) & set(parity.ONNX_CHECKS))
    missing = onnx_graph.available() if with_onnx else None
    if missing:
        print(f"note: {onnx_graph.NAME} left out: {missing}")
        with_onnx = False
    diffs = parity.run_checks(mods, checks, image_size=args.image_size, batch=args.batch_size, seed=args.seed,
                              steps=args.steps, lr=args.lr, init=args.init, onnx=with_onnx,
                              tolerance_scale=args.tolerance_scale, grad_dtype=args.grad_dtype, variant=args.variant,
                              num_classes=args.num_classes, in_channels=args.in_channels,
                              progress=O.show_progress(args))
    rows = parity.summarize(diffs)
    precision = "outputs in float32"
    if set(checks) & set(parity.GRAD_CHECKS):
        precision += ", gradients and SGD " + PRECISION_TEXT[args.grad_dtype]
    table = Table(title=f"NiN parity: {args.variant}, {args.init} init, seed {args.seed}, batch {args.batch_size} of "
                        f"{args.in_channels}x{args.image_size}x{args.image_size}; {precision}",
                  caption="max abs diff = max|a - b| over all elements; relative error = that / max|reference| "
                          "(outputs) or / max|larger side| (loss, gradients, weights)")
    for col, justify in (("pair", "left"), ("check", "left"), ("max abs diff", "right"), ("relative error", "right"),
                         ("tolerance", "right"), ("result", "left"), ("where", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for row in rows:
        table.add_row(row.pair, row.check, _num(row.max_abs), _num(row.rel), f"{row.tol:.0e}",
                      "[green]pass[/green]" if row.passed else "[bold red]FAIL[/bold red]", row.where)
    Console().print(table)  # fits the terminal (80 columns when not one, or $COLUMNS)
    failed = [r for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)} of {len(rows)} checks passed" +
          (f"; failed: {', '.join(f'{r.pair} {r.check}' for r in failed)}" if failed else ""))
    return 1 if failed else 0


def run_workers(args) -> int:
    """``nin parity --workers N``: the data-parallel check, one table per backend."""
    import tempfile

    if args.workers < 2:
        raise ValueError(f"expected --workers of at least 2 for the data-parallel check, got {args.workers}")
    settings = dict(workers=args.workers, steps=args.steps or dataparallel.DEFAULTS["steps"],
                    batch=args.batch_size or dataparallel.DEFAULTS["batch"],
                    image_size=args.image_size or dataparallel.DEFAULTS["image_size"], seed=args.seed, lr=args.lr)
    if settings["batch"] % args.workers:
        raise ValueError(f"expected a batch size that {args.workers} workers split evenly, got {settings['batch']}")
    for name in args.backend:
        registry.load(name)
    table = Table(title=f"NiN data-parallel parity: {settings['steps']} SGD steps, {args.workers} workers x "
                        f"{settings['batch'] // args.workers} images against 1 process x {settings['batch']}, "
                        f"{settings['image_size']}x{settings['image_size']}, dropout off",
                  caption="max abs diff = max|w(workers) - w(one process)| over every element of every weight; "
                          "float64 passes at 1e-10 relative; float32 where the workers' float32 weights are within twice "
                          "what one float32 path costs of float64 (the single process's error, or float64's spread "
                          "under float32-sized nudges), plus the rounding that reordering the batch sums can cost "
                          "(common/tools/parity/dataparallel.py)")
    for col, justify in (("backend", "left"), ("dtype", "left"), ("max abs diff", "right"),
                         ("relative error", "right"), ("result", "left"), ("worst weight", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    failed = []
    with tempfile.TemporaryDirectory(prefix="nin-parity-") as folder:
        for name in args.backend:
            results = dataparallel.compare(name, folder, **settings)
            for dtype in ("float64", "float32"):
                rows = [r for r in results if r.dtype == dtype]
                worst = max(rows, key=lambda r: r.rel)
                ok = all(r.passed for r in rows)
                failed += [] if ok else [f"{name} {dtype}"]
                table.add_row(name, dtype, _num(worst.max_abs), _num(worst.rel),
                              "[green]pass[/green]" if ok else "[bold red]FAIL[/bold red]", worst.item)
    Console().print(table)
    print(f"{2 * len(args.backend) - len(failed)} of {2 * len(args.backend)} checks passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
