"""Images to 0.90 test accuracy for each SGD setting tried: the search behind the CPU recipes.

Not a test: it trains for real.  Each setting is one full run (60,000 training and 10,000 test images, 67 px,
``kaiming-alive``, the chapter's architecture) of ``benchmarks.accuracy`` with the ``quick`` recipe's settings
but those named; its row (label ``reduced``, since settings differ from the recipe's) is appended to
``benchmarks/results/recipe_search.jsonl``, with ``images_to_090``: the training images seen when the test
accuracy, evaluated after each epoch, first reached 0.90 (null where it never did).  Images, not minutes, are the
measure: they do not depend on the machine or its load, so the search may share the cores with other work, and
settings run side by side, one per core (``--cores``).  A setting already in the results file (same backend,
precision, seed and settings) is skipped, so the search resumes where it stopped.

    python -m benchmarks.recipe_search --list                 # the settings and which have rows
    python -m benchmarks.recipe_search --cores 0,1            # run the missing ones, one per core at a time
    python -m benchmarks.recipe_search --only nesterov-b128-lr0.02 --seed 1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

from benchmarks.accuracy import images_to

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "recipe_search.jsonl")

# name -> the settings that differ from the quick recipe's (67 px, kaiming-alive, lr after a half-epoch warm-up,
# cosine to 0); every setting names its batch, epochs, lr and momentum
SETTINGS: Dict[str, dict] = {
    # momentum 0.9: the step's lr is scaled by 1 / (1 - 0.9) = 10 in the long run, so lr 0.02 at batch 128 moves
    # as far per image as plain SGD's 0.05 at batch 32 (x 4 for the batch, / 10 for the momentum)
    "nesterov-b128-lr0.02-e3": dict(batch_size=128, epochs=3, lr=0.02, momentum=0.9, nesterov=True),
    "nesterov-b128-lr0.05-e3": dict(batch_size=128, epochs=3, lr=0.05, momentum=0.9, nesterov=True),
    "momentum-b128-lr0.02-e3": dict(batch_size=128, epochs=3, lr=0.02, momentum=0.9, nesterov=False),
    "nesterov-b64-lr0.01-e3": dict(batch_size=64, epochs=3, lr=0.01, momentum=0.9, nesterov=True),
    "nesterov-b64-lr0.02-e3": dict(batch_size=64, epochs=3, lr=0.02, momentum=0.9, nesterov=True),
    "nesterov-b64-lr0.01-e2": dict(batch_size=64, epochs=2, lr=0.01, momentum=0.9, nesterov=True),
    "nesterov-b64-lr0.015-e3": dict(batch_size=64, epochs=3, lr=0.015, momentum=0.9, nesterov=True),
    "nesterov-b64-lr0.01-e3-warm0.25": dict(batch_size=64, epochs=3, lr=0.01, momentum=0.9, nesterov=True,
                                            warmup=0.25),
    "nesterov-b128-lr0.03-e3": dict(batch_size=128, epochs=3, lr=0.03, momentum=0.9, nesterov=True),
    "nesterov-b128-lr0.02-e4": dict(batch_size=128, epochs=4, lr=0.02, momentum=0.9, nesterov=True),
    "nesterov-b256-lr0.04-e3": dict(batch_size=256, epochs=3, lr=0.04, momentum=0.9, nesterov=True),
    # plain SGD, the recipes before momentum: what reaching 0.90 needs without it
    "sgd-b32-lr0.05-e3": dict(batch_size=32, epochs=3, lr=0.05, momentum=0.0),
    "sgd-b32-lr0.05-e4": dict(batch_size=32, epochs=4, lr=0.05, momentum=0.0),
}


def settings_of(name: str) -> dict:
    chosen = dict(nesterov=False, warmup=0.5, schedule="cosine")
    chosen.update(SETTINGS[name])
    return chosen


def ran(row: dict, name: str) -> bool:
    """Whether ``row`` ran setting ``name``."""
    return all(row["settings"].get(k) == v for k, v in settings_of(name).items())


def done(rows: List[dict], name: str, backend: str, precision: str, seed: int) -> bool:
    return any((row["backend"], row["precision"], row["settings"].get("seed")) == (backend, precision, seed)
               and row["n_train"] == 60000 and ran(row, name) for row in rows)


def command(name: str, backend: str, precision: str, seed: int, results: str) -> List[str]:
    argv = [sys.executable, "-m", "benchmarks.accuracy", "--backend", backend, "--recipe", "quick", "--seed",
            str(seed), "--precision", precision, "--results", results, "--no-progress"]
    for key, value in settings_of(name).items():
        argv += [f"--{key.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def name_of(row: dict):
    """The setting a row ran (None for a row of settings not in SETTINGS)."""
    return next((name for name in SETTINGS if ran(row, name)), None)


def table(rows: List[dict]) -> str:
    """One line per row: the settings, the test accuracy after each epoch, images to 0.90."""
    lines = ["| setting | batch | lr | momentum | warm-up, schedule | backend, precision | seed "
             "| test accuracy after each epoch | images to 0.90 |", "| --- | ---: | ---: | --- | --- | --- | ---: | --- | ---: |"]
    for row in rows:
        s = row["settings"]
        sgd = ("Nesterov " if s["nesterov"] else "") + f"{s['momentum']:g}" if s["momentum"] else "none"
        reached = images_to(0.90, row["val_acc"], row["n_train"])
        lines.append(f"| {name_of(row) or '-'} | {s['batch_size']} | {s['lr']:g} | {sgd} | {s['warmup']:g} epoch, "
                     f"{s['schedule']} | {row['backend']}, {row['precision']} | {s['seed']} | "
                     f"{', '.join(f'{a:.4f}' for a in row['val_acc'])} | "
                     f"{'not reached' if reached is None else f'{reached:,}'} |")
    return "\n".join(lines)


def read(results: str) -> List[dict]:
    if not os.path.isfile(results):
        return []
    with open(results) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="torch")
    p.add_argument("--precision", default="bf16", help="bf16 (where native) or fp32; accuracy, not speed, is "
                                                         "measured, so the faster one serves (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", help="comma list of setting names (default: all)")
    p.add_argument("--cores", default="0", help="comma list of CPU numbers: one run on each at a time")
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--logs", default="/tmp", help="folder for each run's output (default %(default)s)")
    p.add_argument("--list", action="store_true", help="print the settings and whether each has a row")
    p.add_argument("--table", action="store_true", help="print the rows as the Markdown table of docs/results.md")
    args = p.parse_args(argv)
    if args.table:
        print(table(read(args.results)))
        return 0
    names = args.only.split(",") if args.only else list(SETTINGS)
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        p.error(f"expected setting names from {', '.join(SETTINGS)}, got {', '.join(unknown)}")
    rows = read(args.results)
    todo = [n for n in names if not done(rows, n, args.backend, args.precision, args.seed)]
    if args.list:
        for n in names:
            print(f"{n:36s} {'to run' if n in todo else 'has a row'}  {settings_of(n)}")
        return 0
    cores = args.cores.split(",")
    running: Dict[str, subprocess.Popen] = {}
    while todo or running:
        for core, proc in list(running.items()):
            if proc.poll() is not None:
                del running[core]
        for core in cores:
            if core not in running and todo:
                name = todo.pop(0)
                env = dict(os.environ, OMP_NUM_THREADS="1")
                log = open(os.path.join(args.logs, f"recipe_search_{name}.log"), "w")
                print(f"core {core}: {name}", flush=True)
                running[core] = subprocess.Popen(["taskset", "-c", core] + command(
                    name, args.backend, args.precision, args.seed, args.results), cwd=ROOT, env=env,
                    stdout=log, stderr=subprocess.STDOUT)
        time.sleep(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
