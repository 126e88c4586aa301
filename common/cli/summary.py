"""``nin summary``: the chapter's shape table per backend, with parameter counts."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from common.engine import registry
from common.arch import shapes
from common.arch.checks import check_input_shape
from common.arch.variants import VARIANTS, build_spec


def add_parser(sub) -> None:
    p = sub.add_parser("summary", help="per-layer output shapes and parameters, per backend or side by side")
    p.add_argument("--backend", default="all",
                   help=f"{', '.join(registry.BACKENDS)}, or all (default: all, side by side)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--variant", default="chapter", choices=sorted(VARIANTS))
    p.set_defaults(run=run)


def input_shape(data_format: str, in_channels: int, size: int, batch: int = 1):
    return (batch, in_channels, size, size) if data_format == "NCHW" else (batch, size, size, in_channels)


def run(args) -> int:
    names = registry.parse_list(args.backend)
    spec = build_spec(args.variant, args.num_classes, args.in_channels)
    check_input_shape(spec, input_shape("NCHW", args.in_channels, args.image_size), "NCHW")
    mods = [registry.load(n) for n in names]  # fail early, naming the extra to install
    params = shapes.layer_params(spec, args.image_size)
    table = Table(title=f"NiN ({args.variant}), {args.in_channels}x{args.image_size}x{args.image_size} input, "
                        f"{args.num_classes} classes")
    table.add_column("#", justify="right")
    columns = []
    for mod in mods:
        model = mod.NiN(num_classes=args.num_classes, in_channels=args.in_channels, variant=args.variant,
                        image_size=args.image_size, seed=0)
        rows = mod.layer_shapes(model, input_shape(mod.DATA_FORMAT, args.in_channels, args.image_size))
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
