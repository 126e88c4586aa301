"""``nin compare``: train variants in every backend on the same data and write a side-by-side report."""
from __future__ import annotations

from common.cli import options as O
from common.engine import recipes
from common.tools import study
from common.arch.variants import check_variant


def add_parser(sub) -> None:
    p = O.subcommand(sub, "compare", "train variants in several backends; write report.md and plots")
    O.backend(p)
    O.variants(p)
    O.recipe(p, default="quick")
    O.epochs(p, default=None, help="total epochs (default: the recipe's)")
    O.limits(p, train=2000, val=1000)
    O.image_size(p, default=None, help="images are resized to this (default: the recipe's)")
    O.batch_size(p, default=None, help="images per batch (default: the recipe's)")
    O.lr(p, default=None, help="SGD learning rate, the peak of the schedule (default: the recipe's)")
    O.init(p, default=None)
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
    chosen = recipes.resolve(args.recipe, epochs=args.epochs, image_size=args.image_size,
                             batch_size=args.batch_size, lr=args.lr, init=args.init, schedule=args.schedule,
                             warmup=args.warmup)
    settings = dict(recipe=args.recipe, **chosen, limit_train=args.limit_train, limit_val=args.limit_val,
                    seed=args.seed, device=args.device, precision=args.precision, data_dir=args.data_dir)
    runs = study.run_all(names, variants, args.out, progress=O.show_progress(args), **settings)
    print(f"report: {study.write(runs, args.out, settings)}")
    return 0
