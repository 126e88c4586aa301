"""``nin compare``: train variants in every backend on the same data and write a side-by-side report."""
from __future__ import annotations

from nin_common.cli import options as O
from nin_common.engine import recipes
from nin_common.tools import compare
from nin_common.arch.variants import check_variant


def add_parser(sub) -> None:
    p = O.subcommand(sub, "compare", "train variants in several backends; write report.md and plots",
                     description="Train variants in several backends (and seeds) on the same data; write report.md "
                                 "and plots. Run again with the same --out, it reads the runs that finished, "
                                 "continues the interrupted ones from their checkpoint and trains the rest.")
    O.backend(p)
    O.variants(p)
    O.recipe(p, default="quick")
    O.epochs(p, default=None, help="total epochs (default: the recipe's)")
    O.limits(p, train=2000, val=1000)
    O.image_size(p, default=None, help="images are resized to this (default: the recipe's)")
    O.batch_size(p, default=None, help="images per batch (default: the recipe's)")
    O.lr(p, default=None, help="SGD learning rate, the peak of the schedule (default: the recipe's)")
    O.init(p, default=None)
    O.seed(p, default=None, help="seed of the weights, shuffling and dropout (default: 0); each run trains into "
                                 "OUT/runs/<variant>-<backend>")
    O.seeds(p, help="comma list of seeds instead of --seed: each (variant, backend, seed) trains into "
                    "OUT/runs/<variant>-<backend>-s<seed>, and the report gives the mean and min–max over seeds")
    O.device(p)
    O.precision(p)
    O.data_dir(p)
    p.add_argument("--out", required=True, help="folder for report.md, the plots and each run's files")
    p.add_argument("--require-quiet", type=O.positive_float, metavar="LOAD",
                   help="before each run, wait for the 1-minute load average to be at most LOAD (it is recorded "
                        "in the report either way)")
    p.add_argument("--quiet-wait", type=O.non_negative_float, default=600.0, metavar="SECONDS",
                   help="how long --require-quiet waits before it refuses")
    O.progress(p)
    p.set_defaults(run=run)


def run(args) -> int:
    if args.seed is not None and args.seeds is not None:
        raise ValueError(f"expected --seed or --seeds, got both (--seed {args.seed} and --seeds "
                         f"{','.join(map(str, args.seeds))})")
    names = args.backend
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        check_variant(v)
    chosen = recipes.resolve(args.recipe, epochs=args.epochs, image_size=args.image_size,
                             batch_size=args.batch_size, lr=args.lr, init=args.init, schedule=args.schedule,
                             warmup=args.warmup)
    seeds = args.seeds if args.seeds is not None else [0 if args.seed is None else args.seed]
    picked = dict(seeds=",".join(map(str, seeds))) if args.seeds is not None else dict(seed=seeds[0])
    settings = dict(recipe=args.recipe, **chosen, limit_train=args.limit_train, limit_val=args.limit_val,
                    **picked, device=args.device, precision=args.precision, data_dir=args.data_dir)
    config = compare.CompareSettings(seeds=seeds, named_by_seed=args.seeds is not None,
                                     require_quiet=args.require_quiet, quiet_wait=args.quiet_wait,
                                     progress=O.show_progress(args),
                                     training={k: v for k, v in settings.items() if k not in picked})
    runs = compare.run_all(names, variants, args.out, config)
    print(f"report: {compare.write(runs, args.out, settings)}")
    return 0
