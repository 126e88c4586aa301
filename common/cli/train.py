"""``nin train``: the chapter's recipe on Fashion-MNIST in one backend, with progress, metrics, checkpoints."""
from __future__ import annotations

import inspect
import sys

from common.engine import precision, recipes, registry, runs, training
from common.arch.variants import VARIANTS
from common.arch.weights import INITS

# fit's arguments the command offers, with their option names; defaults come from fit itself
OPTIONS = {"recipe": str, "epochs": int, "batch_size": int, "lr": float, "image_size": int, "limit_train": int, "limit_val": int,
           "device": str, "precision": str, "seed": int, "init": str, "schedule": str, "warmup": float, "variant": str, "data_dir": str}
DEFAULTS = {name: p.default for name, p in inspect.signature(training.run).parameters.items()}
CHAPTER = recipes.RECIPES[recipes.DEFAULT_RECIPE]


def _recipes_help() -> str:
    return "; ".join(f"{name}: {recipes.describe(r['schedule'], r['lr'], r['warmup'])}, {r['image_size']} px, "
                     f"{r['init']}, {r['epochs']} epochs" for name, r in recipes.RECIPES.items())


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train NiN on Fashion-MNIST (default: the chapter's recipe)",
                       description="Train NiN on Fashion-MNIST. Defaults are the chapter's recipe: SGD lr 0.05, "
                                   "batch 128, 10 epochs, 224x224, Xavier init; --recipe quick learns on a CPU in "
                                   "minutes. Options given win over the recipe's values. With --resume, the "
                                   "options left out are taken from the run being resumed.")
    p.add_argument("--backend", choices=registry.BACKENDS, help="torch, mxnet or tf (with --resume: the run's)")
    p.add_argument("--recipe", choices=list(recipes.RECIPES),
                   help=f"the settings not given (default {recipes.DEFAULT_RECIPE}): {_recipes_help()}")
    p.add_argument("--epochs", type=int, help=f"total epochs (chapter: {CHAPTER['epochs']})")
    p.add_argument("--batch-size", type=int, help=f"chapter: {CHAPTER['batch_size']}")
    p.add_argument("--lr", type=float, help=f"SGD learning rate, the peak of the schedule (chapter: {CHAPTER['lr']})")
    p.add_argument("--schedule", choices=recipes.SCHEDULES, help="learning rate after the warm-up: constant "
                                                                  "(chapter) or cosine (decays to 0 at the end)")
    p.add_argument("--warmup", type=float, help="epochs of linear learning-rate warm-up (chapter: 0)")
    p.add_argument("--image-size", type=int, help=f"images are resized to this (chapter: {CHAPTER['image_size']})")
    p.add_argument("--limit-train", type=int, help="train on the first N training images only")
    p.add_argument("--limit-val", type=int, help="validate on the first N test images only")
    p.add_argument("--device", choices=precision.DEVICES, help="auto (the GPU when the framework sees one; default), "
                                                               "cpu or gpu")
    p.add_argument("--precision", choices=precision.PRECISIONS,
                   help="fp32, bf16 (bfloat16 compute, float32 master weights) or auto (default: bf16 where the device "
                        "computes it natively, e.g. a recent GPU, else fp32)")
    p.add_argument("--seed", type=int, help=f"weights, shuffling and dropout (default {DEFAULTS['seed']})")
    p.add_argument("--init", choices=INITS, help="xavier (the chapter's; sits at loss 2.303 for a long time) or "
                                                 "kaiming (He-normal, zero biases; leaves that plateau much sooner)")
    p.add_argument("--variant", choices=sorted(VARIANTS), help="network variant (default chapter)")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST files (else $NIN_DATA_DIR, the cache, "
                                      "Debian's copy, a download)")
    p.add_argument("--out", help="folder for metrics.jsonl, curves.png and checkpoint/ (default: with --resume, "
                                 "the resumed run's folder; else nothing is saved)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last completed epoch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    stored = runs.resume_settings(args.resume) if args.resume else {}
    backend = args.backend or stored.get("backend")
    if backend is None:
        raise ValueError("expected --backend torch|mxnet|tf (or --resume DIR)")
    kwargs = {}
    for name in OPTIONS:
        given = getattr(args, name)
        kwargs[name] = given if given is not None else stored.get(name, DEFAULTS[name])
    registry.load(backend)  # names the extra to install when the framework is missing
    fit = registry.part(backend, "training").fit
    if args.out is None and args.resume is None:
        print("nin train: no --out given: metrics and checkpoints are not saved", file=sys.stderr)
    try:
        fit(out=args.out, resume=args.resume, progress=not args.no_progress, **kwargs)
    except training.NonFiniteLoss as err:
        print(f"nin train: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        where = args.out or args.resume
        print("nin train: interrupted" + (f"; continue with: nin train --resume {where}" if where else ""),
              file=sys.stderr)
        return 130
    return 0
