"""Accuracy of a training recipe per backend; appends one result line per backend to a results file.

Not a test: it trains for real.  ``--recipe`` (default ``chapter``: SGD lr 0.05, batch 128, 10 epochs, 224x224,
Xavier, hours on a CPU; ``quick``: minutes on a CPU) fills the options not given; a run that changes any of the
recipe's settings or limits the data is labelled ``reduced``.

    python -m benchmarks.accuracy --backend all --recipe quick --seed 0   # the CPU evidence (docs/results.md)
    python -m benchmarks.accuracy --backend torch --recipe quick-b32 --workers 2   # data-parallel, same recipe
    python -m benchmarks.accuracy --backend all                           # the chapter's recipe (on a GPU)
    python -m benchmarks.plot_accuracy                                    # the overlay PNG of the quick rows

Each line of ``benchmarks/results/accuracy.jsonl``: label, backend, framework version, device, settings,
validation accuracy (and losses) per epoch, seconds, images/s, whether the target was met, the machine.
"""
from __future__ import annotations

import argparse
import datetime
import inspect
import json
import math
import os
import sys
import time

from nin_common.cli import options
from nin_common.engine import recipes, registry, training
from nin_common.engine.precision import DEVICES, PRECISIONS
from nin_common.engine.runs import memory_figures
from nin_common.util.machine import describe, git_commit, thread_defaults, vector_flags

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RESULTS = os.path.join(HERE, "results", "accuracy.jsonl")
DEFAULTS = {name: p.default for name, p in inspect.signature(training.run).parameters.items()}
# test accuracy each recipe must reach in every backend, and within how many seconds on a 2-core CPU
TARGETS = {"chapter": dict(acc=0.85, seconds=None), "quick": dict(acc=0.88, seconds=15 * 60),
           "quick-b32": dict(acc=0.90, seconds=15 * 60),
           "quick-nesterov": dict(acc=0.90, seconds=8 * 60)}  # one per recipe (a test checks)
RESOLVED = ("epochs", "batch_size", "lr", "image_size", "init", "schedule", "warmup", "momentum",
            "nesterov")  # as the run took them
PLATEAU = math.log(10)  # the loss of a network that predicts chance (0.1) for every class: 2.303
STALLED_WITHIN = 0.02   # a final training loss this close to the plateau counts as stalled


def stalled(final_train_loss: float) -> bool:
    """Still on the loss plateau at 2.303 (chance) after training."""
    return abs(final_train_loss - PLATEAU) < STALLED_WITHIN


def images_to(accuracy: float, val_acc, n_train: int):
    """Training images seen when the test accuracy (evaluated after each epoch) first reached ``accuracy``;
    None if it never did."""
    return next(((epoch + 1) * n_train for epoch, acc in enumerate(val_acc) if acc >= accuracy), None)


def run_one(backend: str, settings: dict, args) -> dict:
    started = time.perf_counter()  # end to end: the framework's import too (a fresh process pays it)
    fit = registry.part(backend, "training").fit
    out = os.path.join(args.out_root, backend) if args.out_root else None
    resume = out if args.resume and out and os.path.isfile(os.path.join(out, "checkpoint", "state.json")) else None
    load_before = describe()["load_avg"]
    rows = fit(device=args.device, seed=args.seed, data_dir=args.data_dir, out=None if resume else out,
               resume=resume, progress=not args.no_progress, **settings)
    end_to_end = time.perf_counter() - started
    seconds = rows[-1]["elapsed_s"]  # training and evaluation, summed over the run's processes when resumed
    recipe = recipes.check_recipe(settings["recipe"])
    full = (all(settings[k] in (None, recipe[k]) for k in recipes.RECIPE_KEYS) and settings["limit_train"] is None
            and settings["limit_val"] is None)  # any precision
    target = TARGETS[settings["recipe"]]
    val_acc = [round(r["val_acc"], 4) for r in rows]
    met = val_acc[-1] >= target["acc"] and (target["seconds"] is None or seconds <= target["seconds"])
    return dict(
        label=settings["recipe"] if full else "reduced", recipe=settings["recipe"], backend=backend,
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        framework=registry.framework_version(backend),
        device=rows[-1]["device"], precision=rows[-1]["precision"],
        settings=dict(settings, seed=args.seed, **{k: rows[-1][k] for k in RESOLVED}),
        n_train=rows[-1]["n_train"], workers=rows[-1].get("workers", 1),
        n_val=rows[-1]["n_val"], val_acc=val_acc, val_loss=[round(r["val_loss"], 4) for r in rows],
        train_loss=[round(r["train_loss"], 4) for r in rows], train_acc=[round(r["train_acc"], 4) for r in rows],
        images_per_s=[round(r["images_per_s"], 1) for r in rows], seconds=round(seconds, 1),
        end_to_end_s=None if resume else round(end_to_end, 1),
        resumed_from=resume, train_s=[round(r["train_s"], 1) for r in rows], elapsed_s=[round(r["elapsed_s"], 1) for r in rows],
        load_avg=[r.get("load_avg") for r in rows], load_avg_before=load_before,
        **memory_figures(rows),
        final_val_acc=val_acc[-1], images_to_090=images_to(0.90, val_acc, rows[-1]["n_train"]),
        stalled=stalled(rows[-1]["train_loss"]),
        target=(f">= {target['acc']} test accuracy" + (f" within {target['seconds']} s" if target["seconds"] else "")
                if full else "n/a (reduced setting)"),
        target_met=met if full else None, commit=git_commit(ROOT), machine=describe(),
        cpu_flags=vector_flags())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="all", help="torch, mxnet, tf, a comma-separated list, or all")
    p.add_argument("--recipe", default=recipes.DEFAULT_RECIPE, choices=list(recipes.RECIPES),
                   help="the settings not given (default %(default)s)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--schedule", choices=recipes.SCHEDULES)
    p.add_argument("--warmup", type=float)
    p.add_argument("--momentum", type=options.fraction)
    p.add_argument("--nesterov", type=options.boolean, metavar="true|false")
    p.add_argument("--image-size", type=int)
    p.add_argument("--limit-train", type=int)
    p.add_argument("--limit-val", type=int)
    p.add_argument("--init", choices=("xavier", "kaiming"))
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--precision", default=DEFAULTS["precision"], choices=PRECISIONS,
                   help="fp32, bf16 (bfloat16 compute, float32 weights) or auto (bf16 where native; default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, help="data-parallel worker processes through the framework's engine "
                   "(the global batch is the recipe's, split over them; default: one process)")
    p.add_argument("--data-dir")
    p.add_argument("--results", default=RESULTS, help="the JSON-lines file results are appended to")
    p.add_argument("--out-root", help="keep each run's metrics, curves and checkpoints in OUT_ROOT/<backend>")
    p.add_argument("--resume", action="store_true",
                   help="continue a run OUT_ROOT/<backend> holds from its last completed epoch (the same weights "
                        "as an uninterrupted run on a CPU)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    settings = dict(recipe=args.recipe, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    schedule=args.schedule, warmup=args.warmup, momentum=args.momentum,
                    nesterov=args.nesterov, image_size=args.image_size,
                    limit_train=args.limit_train, limit_val=args.limit_val, init=args.init, variant="chapter",
                    precision=args.precision, workers=args.workers)
    thread_defaults()  # before the first framework import
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    for backend in registry.parse_list(args.backend):
        result = run_one(backend, settings, args)
        with open(args.results, "a") as f:
            f.write(json.dumps(result, sort_keys=True, allow_nan=False) + "\n")
        print(f"{result['label']} {backend} {result['precision']}: val acc per epoch {result['val_acc']} in "
              f"{result['seconds']:.0f} s on "
              f"{result['device']}" + (" (STALLED at the 2.303 plateau)" if result["stalled"] else "")
              + ("" if result["target_met"] is None else f"; target {result['target']} met: {result['target_met']}"),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
