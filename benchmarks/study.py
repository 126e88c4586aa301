"""The chapter's exercises trained to the end: every variant, the quick recipe, full data, several seeds; resumable.

Not a test.  Each (variant, backend, seed) is one ``nin train --recipe quick-b32 --precision fp32`` run in its
own folder under ``--out``; a run that was interrupted (the session ended, the machine rebooted) is continued
with ``nin train --resume``, which is bit-identical on the CPU, and a run whose row is already in ``--results``
is skipped.  So the
same command, started again, carries on where the last one stopped.  Runs go seed by seed (every variant's seed 0
first), at the lowest CPU priority (``nice 19``) unless ``--nice 0``, so that the study takes only cores nothing
else wants; it must not run while anything is being timed.  Each finished run appends one JSON line to
``benchmarks/results/study.jsonl``: the final epoch's figures, the run's settings, the machine, the load, the
commit, and the whole curve.

    python -m benchmarks.study                               # PyTorch, every variant, seeds 0,1,2
    python -m benchmarks.study --backend tf --variants chapter,1x1-0 --seeds 0
    python -m benchmarks.study --variants nin-vgg11 --seeds 0 --limit-train 12000   # a reduced, labelled run
    python -m benchmarks.study --variants chapter,fc-head,gradual --init kaiming-alive-all --image-size 131 \
        --recipe quick-nesterov --precision bf16 --seeds 0,1      # exercises 3 and 5 where the last maps are 3x3

The recipe and precision are fixed, not ``auto``: ``quick-b32`` in fp32 is the CPU recipe that reaches 0.90 on
every CPU this project runs on, so a seed trained on an AVX2-only machine and one trained where bf16 is native
are the same experiment (``quick`` would be bf16 on one and fp32 on the other, and three times slower on the
AVX2 one).  PyTorch is the default backend: the fastest at this recipe on the Xeon measured (about 500
images/s in fp32 at batch 32, against 340-380 for MXNet and TensorFlow).
``nin-vgg11`` costs 15 times the chapter's multiply-adds, so it is not in the default list: it runs reduced.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from nin_common.engine.runs import memory_figures
from nin_common.util.machine import cpu_flags, describe, git_commit, load_average

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RESULTS = os.path.join(HERE, "results", "study.jsonl")
VARIANTS = ("chapter", "1x1-0", "1x1-1", "1x1-3", "3x3", "fc-head", "fc-head-wide", "gradual")
FLAGS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}


def done(results: str) -> set:
    if not os.path.exists(results):
        return set()
    with open(results, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {(r["variant"], r["backend"], r["seed"], r["recipe"], r.get("init_override"), r.get("limit_train"),
             r["image_size"]) for r in rows}


def image_size(args) -> int:
    """The run's image size: ``--image-size``, else the recipe's."""
    from nin_common.engine import recipes

    return args.image_size or recipes.check_recipe(args.recipe)["image_size"]


def run_one(variant: str, backend: str, seed: int, args) -> dict:
    tag = ((f"-{args.init}" if args.init else "") + (f"-n{args.limit_train}" if args.limit_train else "")
           + (f"-px{args.image_size}" if args.image_size else ""))
    folder = os.path.join(args.out, f"{variant}-{backend}-{args.recipe}{tag}-s{seed}")
    if os.path.exists(os.path.join(folder, "checkpoint", "state.json")):
        argv = ["train", "--resume", folder]
    else:
        argv = ["train", "--backend", backend, "--variant", variant, "--recipe", args.recipe, "--seed", str(seed),
                "--precision", args.precision, "--device", args.device, "--out", folder]
        if args.init:
            argv += ["--init", args.init]
        if args.limit_train:
            argv += ["--limit-train", str(args.limit_train)]
        if args.image_size:
            argv += ["--image-size", str(args.image_size)]
    before, commit = load_average(), git_commit(ROOT)  # the code the run starts with
    cmd = ["nice", "-n", str(args.nice), sys.executable, "-m", "nin_common.cli", *argv, "--no-progress"]
    print(f"study: {' '.join(cmd[3:])}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"study: {variant} / {backend} / seed {seed} failed: {proc.stderr.strip()[-1500:]}")
    with open(os.path.join(folder, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    last = rows[-1]
    return dict(variant=variant, backend=backend, seed=seed, recipe=args.recipe, init_override=args.init,
                limit_train=args.limit_train, label="reduced" if args.limit_train else "full",
                init=last["init"], precision=last["precision"], image_size=last["image_size"],
                batch_size=last["batch_size"], epochs=last["epochs"], n_train=last["n_train"], n_val=last["n_val"],
                val_acc=last["val_acc"], val_loss=last["val_loss"], train_acc=last["train_acc"],
                train_loss=last["train_loss"], epoch_s=[r["train_s"] for r in rows],
                curve=[dict(epoch=r["epoch"], train_loss=r["train_loss"], train_acc=r["train_acc"],
                            val_loss=r["val_loss"], val_acc=r["val_acc"]) for r in rows],
                **memory_figures(rows), device=last.get("device"),
                nice=args.nice, load_before=before, load_after=load_average(),
                load_per_epoch=[r.get("load_avg") for r in rows], folder=os.path.relpath(folder, ROOT),
                date=datetime.datetime.now().isoformat(timespec="seconds"), commit=commit,
                machine=describe(), cpu_flags=sorted(cpu_flags() & FLAGS))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--backend", default="torch", help="comma list")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--recipe", default="quick-b32")
    p.add_argument("--init", default=None, help="an init other than the recipe's (a fairness run)")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--limit-train", type=int, default=None, help="train on this many images (a reduced run)")
    p.add_argument("--image-size", type=int, default=None,
                   help="images resized to this instead of the recipe's (131: the last maps 3x3, where exercises 3 "
                        "and 5 ask their question)")
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="cpu (the study's machine) or gpu")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (on a GPU, whose steps at batch 32 leave it "
                                                      "mostly idle; on a CPU one run already takes every core)")
    p.add_argument("--nice", type=int, default=19)
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "study"))
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args()
    finished = done(args.results)
    todo = [(variant, backend, int(seed)) for seed in args.seeds.split(",") for variant in args.variants.split(",")
            for backend in args.backend.split(",")
            if (variant, backend, int(seed), args.recipe, args.init, args.limit_train, image_size(args))
            not in finished]
    lock = threading.Lock()

    failed = []

    def one(job) -> None:
        variant, backend, seed = job
        try:
            row = run_one(variant, backend, seed, args)
        except SystemExit as err:  # one run's failure, reported; the others go on
            print(err, file=sys.stderr, flush=True)
            failed.append(job)
            return
        with lock:
            with open(args.results, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            print(f"study: {variant} / {backend} / seed {seed}: test accuracy {row['val_acc']:.4f} "
                  f"({sum(row['epoch_s']) / 60:.1f} min of training)", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for future in [pool.submit(one, job) for job in todo]:
            future.result()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
