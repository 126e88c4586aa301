"""``nin compare``: train variants in every backend on the same data and write a side-by-side report."""
from __future__ import annotations

from common.cli import options as O
from common.tools import study
from common.arch.variants import check_variant


def add_parser(sub) -> None:
    p = O.subcommand(sub, "compare", "train variants in several backends; write report.md and plots")
    O.backend(p)
    O.variants(p)
    O.epochs(p, default=1)
    O.limits(p, train=2000, val=1000)
    O.image_size(p, default=96)
    O.batch_size(p, default=64)
    O.lr(p)
    O.init(p, default="kaiming")
    O.seed(p)
    O.device(p)
    O.precision(p)
    O.data_dir(p)
    p.add_argument("--out", required=True, help="folder for report.md, the plots and each run's files")
    O.progress(p)
    p.set_defaults(run=run)


def run(args) -> int:
    names = args.backend
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        check_variant(v)
    settings = dict(epochs=args.epochs, image_size=args.image_size, limit_train=args.limit_train,
                    limit_val=args.limit_val, batch_size=args.batch_size, lr=args.lr, init=args.init,
                    seed=args.seed, device=args.device, precision=args.precision,
                    data_dir=args.data_dir)
    runs = study.run_all(names, variants, args.out, progress=O.show_progress(args), **settings)
    print(f"report: {study.write(runs, args.out, settings)}")
    return 0
