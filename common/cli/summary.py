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
from nin_common.util.tables import first_fitting


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
    console.print(first_fitting(console, shape_table(title, columns, params),
                                compact_table(title, spec, columns, params)))
    return 0


def shape_table(title: str, columns, params) -> Table:
    """Every backend's layers (each framework's own names) and output shapes side by side."""
    table = Table(title=title, box=box.HEAVY_HEAD)
    table.add_column("#", justify="right")
    for mod, _, _ in columns:
        table.add_column(f"{mod.BACKEND} layer")
        table.add_column(f"{mod.BACKEND} output ({mod.DATA_FORMAT})")
    table.add_column("parameters", justify="right")
    for i, count in enumerate(params):
        cells = [str(i)]
        for _, rows, _ in columns:
            name, out = rows[i]
            cells += [name, str(tuple(out))]
        table.add_row(*cells, f"{count:,}")
    total = [""]
    for mod, _, n in columns:
        total += ["total", f"{n:,} (counted by {registry.framework(mod.BACKEND)})"]
    table.add_row(*total, f"{sum(params):,}", end_section=True)
    return table


def compact_table(title: str, spec, columns, params) -> Table:
    """The table for 80 columns: each layer named once (the spec's name), one column of output shapes per data
    format, written without spaces; a cell gives each backend's shape (or parameter count) on a line of its own
    where the backends of that format differ."""
    table = Table(title=title, caption="output shapes; layer names: the spec's (each framework's own in a wider "
                                       "terminal); total: parameters as each framework counts them",
                  box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    table.add_column("layer")
    groups = {}  # data format -> its backends' columns, in the order given
    for column in columns:
        groups.setdefault(column[0].DATA_FORMAT, []).append(column)
    for layout, group in groups.items():
        table.add_column(f"{', '.join(mod.BACKEND for mod, _, _ in group)} ({layout})", no_wrap=True)
    table.add_column("parameters", justify="right")

    def cell(group, value) -> str:
        values = [value(*column) for column in group]
        if len(set(values)) == 1:
            return values[0]
        return "\n".join(f"{mod.BACKEND} {v}" for (mod, _, _), v in zip(group, values))

    for i, count in enumerate(params):
        outputs = [cell(g, lambda mod, rows, n: "(" + ",".join(map(str, rows[i][1])) + ")") for g in groups.values()]
        table.add_row(str(i), shapes.layer_name(spec.layers[i]), *outputs, f"{count:,}")
    totals = [cell(g, lambda mod, rows, n: f"{n:,}") for g in groups.values()]
    table.add_row("", "total", *totals, f"{sum(params):,}", end_section=True)
    return table
