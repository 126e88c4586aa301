"""``nin compare``: train variants in every backend on the same data and write a side-by-side report."""
from __future__ import annotations

from common.engine import precision, registry
from common.tools import study
from common.arch.variants import VARIANTS, check_variant
from common.arch.weights import INITS


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="train variants in several backends; write report.md and plots",
                       description="Train each variant in each backend on the same data, seed and batch order, "
                                   "then write DIR/report.md with shape tables (NCHW vs NHWC), parameters, "
                                   "multiply-adds, time per epoch, curves and final accuracy, plus PNG plots.")
    p.add_argument("--backends", default="all", help="comma-separated backends or all (default)")
    p.add_argument("--variants", default="chapter", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--limit-train", type=int, default=2000)
    p.add_argument("--limit-val", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--init", choices=INITS, default="kaiming")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=precision.DEVICES, default="auto")
    p.add_argument("--out", required=True, help="folder for report.md, the plots and each run's files")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    names = registry.parse_list(args.backends)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        check_variant(v)
    settings = dict(epochs=args.epochs, image_size=args.image_size, limit_train=args.limit_train,
                    limit_val=args.limit_val, batch_size=args.batch_size, lr=args.lr, init=args.init,
                    seed=args.seed, device=args.device)
    runs = study.run_all(names, variants, args.out, progress=not args.no_progress, **settings)
    print(f"report: {study.write(runs, args.out, settings)}")
    return 0
