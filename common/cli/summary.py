"""``nin summary``: the chapter's shape table per backend, with parameter counts."""
from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from nin_common.engine import registry
from nin_common.arch import shapes
from nin_common.arch.checks import check_input_shape
from nin_common.arch.variants import build_spec
from nin_common.cli import options as O


def add_parser(sub) -> None:
    p = O.subcommand(sub, "summary", "per-layer output shapes and parameters, per backend or side by side")
    O.backend(p, help="backend(s), side by side")
    O.image_size(p)
    O.shape(p)
    O.variant(p)
    p.set_defaults(run=run)


def run(args) -> int:
    names = args.backend
    spec = build_spec(args.variant, args.num_classes, args.in_channels)
    check_input_shape(spec, shapes.batch_shape("NCHW", 1, args.in_channels, args.image_size), "NCHW")
    mods = [registry.load(n) for n in names]  # fail early, naming the extra to install
    params = shapes.layer_params(spec, args.image_size)
    title = f"NiN ({args.variant}), {args.in_channels}x{args.image_size}x{args.image_size} input, " \
            f"{args.num_classes} classes"
    columns = []
    for mod in mods:
        model = mod.NiN(num_classes=args.num_classes, in_channels=args.in_channels, variant=args.variant,
                        image_size=args.image_size, seed=0)
        rows = mod.layer_shapes(model, shapes.batch_shape(mod.DATA_FORMAT, 1, args.in_channels, args.image_size))
        columns.append((mod, rows, mod.num_params(model)))
    console = Console()  # the terminal's width (80 columns when not a terminal, or $COLUMNS)
    table = shape_table(title, spec, columns, params, compact=False)
    if console.measure(table, options=console.options.update_width(10_000)).maximum > console.width:  # too wide: one layer column, shapes without spaces
        table = shape_table(title, spec, columns, params, compact=True)
    console.print(table)
    return 0


def shape_table(title: str, spec, columns, params, compact: bool) -> Table:
    """Every backend's layers and output shapes side by side; ``compact`` names each layer once (the spec's
    name) and writes shapes without spaces, so that three backends fit 80 columns."""
    table = Table(title=title, caption="output shapes; layer names: the spec's (each framework's own in a wider "
                                       "terminal)" if compact else None, box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD)
    table.add_column("#", justify="right")
    if compact:
        table.add_column("layer")
    for mod, _, _ in columns:
        if not compact:
            table.add_column(f"{mod.BACKEND} layer")
        table.add_column(f"{mod.BACKEND} ({mod.DATA_FORMAT})" if compact else f"{mod.BACKEND} output ({mod.DATA_FORMAT})",
                         no_wrap=compact)
    table.add_column("parameters", justify="right")
    shape = (lambda s: "(" + ",".join(map(str, s)) + ")") if compact else (lambda s: str(tuple(s)))
    for i, count in enumerate(params):
        cells = [str(i)] + ([shapes.layer_name(spec.layers[i])] if compact else [])
        for _, rows, _ in columns:
            name, out = rows[i]
            cells += [shape(out)] if compact else [name, shape(out)]
        table.add_row(*cells, f"{count:,}")
    total = [""] + (["total"] if compact else [])
    for mod, _, n in columns:
        total += [f"{n:,}"] if compact else ["total", f"{n:,} (counted by {registry.framework(mod.BACKEND)})"]
    table.add_row(*total, f"{sum(params):,}", end_section=True)
    return table
