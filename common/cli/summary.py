"""``nin summary``: the chapter's shape table per backend, with parameter counts."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from common.engine import registry
from common.arch import shapes
from common.arch.checks import check_input_shape
from common.arch.variants import build_spec
from common.cli import options as O


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
    table = Table(title=f"NiN ({args.variant}), {args.in_channels}x{args.image_size}x{args.image_size} input, "
                        f"{args.num_classes} classes")
    table.add_column("#", justify="right")
    columns = []
    for mod in mods:
        model = mod.NiN(num_classes=args.num_classes, in_channels=args.in_channels, variant=args.variant,
                        image_size=args.image_size, seed=0)
        rows = mod.layer_shapes(model, shapes.batch_shape(mod.DATA_FORMAT, 1, args.in_channels, args.image_size))
        columns.append((mod, rows, mod.num_params(model)))
        table.add_column(f"{mod.BACKEND} layer")
        table.add_column(f"{mod.BACKEND} output ({mod.DATA_FORMAT})")
    table.add_column("parameters", justify="right")
    for i, count in enumerate(params):
        cells = [str(i)]
        for _, rows, _ in columns:
            name, shape = rows[i]
            cells += [name, str(tuple(shape))]
        table.add_row(*cells, f"{count:,}")
    total = [""]
    for mod, _, n in columns:
        total += ["total", f"{n:,} (counted by {registry.framework(mod.BACKEND)})"]
    table.add_row(*total, f"{sum(params):,}", end_section=True)
    Console(width=200).print(table)
    return 0
