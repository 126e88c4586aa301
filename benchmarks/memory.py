"""Exercise 4's memory, measured in each framework: ``nin resources --measure`` for the chapter's network at 224 px
and every variant at a small input; appends rows, prints the tables ``docs/exercises.md`` shows.

Not a test.  Each configuration is one ``nin resources --measure --json`` (a fresh measuring process per
backend, as the command does): the analytic figures and, per backend, what its allocator held for a training step
and a prediction (how each one is measured: ``nin_<backend>/resources.py``).  The figures are allocator and
resident-memory counts, not times, so the machine's load does not change them much (it is recorded); TensorFlow's
and JAX's are resident memory and move by a few per cent from run to run.

    python -m benchmarks.memory                      # every configuration below, then the tables
    python -m benchmarks.memory --table              # only the tables, from the rows

One JSON line per configuration is appended to ``benchmarks/results/memory.jsonl`` (the command, its JSON output
without the per-layer list, the machine, the commit, the date).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

from nin_common.arch.costs import human
from nin_common.engine.registry import BACKENDS as ORDER, INFO
from nin_common.util.machine import describe, git_commit
from nin_common.util.markdown import table

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "memory.jsonl")

BACKENDS = "torch,mxnet,tf"
CHAPTER = dict(variant="chapter", image_size=224, batch_size=128, optimizer="sgd", backends=BACKENDS)
VARIANT_SIZES = {"chapter": 99, "1x1-0": 99, "1x1-1": 99, "1x1-3": 99, "3x3": 99, "fc-head": 99,
                 "fc-head-wide": 99, "gradual": 99, "nin-vgg11": 64, "nin-vgg16": 64, "nin-vgg19": 64, "cifar10": 32,
                 "ceil-pool": 99}
VARIANTS = [dict(variant=v, image_size=s, batch_size=32, optimizer="sgd", backends=BACKENDS)
            for v, s in VARIANT_SIZES.items()]
JAX = dict(variant="chapter", image_size=99, batch_size=32, optimizer="momentum", backends="jax")
CONFIGS = [CHAPTER] + VARIANTS + [JAX]


def argv_of(config: dict) -> list:
    return ["resources", "--variant", config["variant"], "--image-size", str(config["image_size"]),
            "--batch-size", str(config["batch_size"]), "--optimizer", config["optimizer"],
            "--backend", config["backends"], "--measure", "--json"]


def measure(config: dict) -> dict:
    argv = argv_of(config)
    proc = subprocess.run([sys.executable, "-m", "nin_common.cli", *argv], cwd=ROOT, capture_output=True, text=True)
    try:  # exit 1 with the figures when a backend's measurement is outside the tolerance: a row all the same
        out = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit(f"nin {' '.join(argv)} failed: {proc.stderr.strip()[-1500:]}") from None
    out.pop("layers", None)
    return dict(config=config, command="nin " + " ".join(argv), result=out, machine=describe(),
                commit=git_commit(ROOT), date=datetime.datetime.now().isoformat(timespec="seconds"))


def read(path: str) -> dict:
    """config (as a tuple) -> its last row."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {tuple(sorted(r["config"].items())): r for r in rows}


def _measured(row: dict, backend: str, key: str, error: bool = True) -> str:
    m = row["result"]["backends"][backend]["measured"]
    err = m.get(f"{key}_error") if error else None
    return human(m[key]) + (f" ({err:+.0%})" if err is not None else "")


def _backends(row: dict) -> list:
    return [b for b in ORDER if b in row["result"]["backends"]]  # the registry's order


def chapter_table(row: dict) -> str:
    mem, backends = row["result"]["memory"], _backends(row)
    lines = [("parameters", mem["params"], "params"), ("gradients", mem["grads"], "grads"),
             ("optimizer state (SGD)", mem["optimizer_state"], "state"),
             ("activations kept for backward", mem["activations_kept"], "kept"),
             ("**training**", mem["train"], "train"), ("training step peak", None, "step"),
             ("peak live activations", mem["peak_activations"], "live"), ("**prediction**", mem["predict"], "predict")]
    body = []
    for label, value, key in lines:
        cells = []
        for b in backends:
            c = row["result"]["backends"][b]
            shown = _measured(row, b, key, error=key in ("kept", "train", "predict"))
            if key == "live":
                shown += f" (modeled {human(c['modeled']['live'])})"
            elif key == "predict":
                shown = f"{human(c['measured']['predict'])} ({c['measured']['predict_error']:+.0%} of modeled)"
            cells.append(shown)
        analytic = "" if value is None else human(value) + (" (neutral)" if key in ("live", "predict") else "")
        body.append([label, f"**{analytic}**" if label.startswith("**") and analytic else analytic] + cells)
    return table(["", "analytic"] + [INFO[b].framework for b in backends], body)


def variants_table(rows: list) -> str:
    backends = _backends(rows[0])
    names = [INFO[b].framework for b in backends]
    header = (["variant", "input", "training: analytic"] + names + [f"step peak: {' / '.join(names)}"]
              + [f"prediction, measured (vs modeled): {name}" for name in names])
    body = []
    for r in rows:
        res, c = r["result"], r["config"]
        body.append([f"`{c['variant']}`", f"{res['in_channels']}×{c['image_size']}×{c['image_size']}",
                     human(res["memory"]["train"])] + [_measured(r, b, "train") for b in backends]
                    + [" / ".join(_measured(r, b, "step", error=False) for b in backends)]
                    + [_measured(r, b, "predict") for b in backends])
    return table(header, body)


def jax_line(row: dict) -> str:
    m, mem = row["result"]["backends"]["jax"]["measured"], row["result"]["memory"]
    modeled = row["result"]["backends"]["jax"]["modeled"]["predict"]
    return (f"`{row['command']}`: training {human(m['train'])} against {human(mem['train'])} analytic "
            f"({m['train_error']:+.0%}), activations kept {human(m['kept'])} against {human(mem['activations_kept'])}, "
            f"prediction {human(m['predict'])} against {human(modeled)} modeled ({m['predict_error']:+.0%})")


def tables(path: str) -> str:
    rows = read(path)
    get = lambda config: rows.get(tuple(sorted(config.items())))  # noqa: E731
    out = []
    if get(CHAPTER):
        r = get(CHAPTER)
        out += [f"`{r['command']}` (commit {r['commit']}, {r['machine'].get('cpu')}, 1-minute load "
                f"{r['machine'].get('load_avg', ['?'])[0]}):", "", chapter_table(r), ""]
    found = [get(c) for c in VARIANTS if get(c)]
    if found:
        loads = [r["machine"].get("load_avg", [0])[0] for r in found]
        out += [f"Every variant, batch 32, SGD (`nin resources --variant V --image-size S --batch-size 32 --measure`; "
                f"commit {', '.join(sorted({r['commit'] for r in found}))}, "
                f"{', '.join(sorted({r['machine'].get('cpu', '?') for r in found}))}, 1-minute load "
                f"{min(loads):g}–{max(loads):g}):", "",
                variants_table(found), ""]
    if get(JAX):
        out += [jax_line(get(JAX)), ""]
    return "\n".join(out) or f"no rows in {path}: python -m benchmarks.memory"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", action="store_true", help="only print the tables from the rows")
    p.add_argument("--only", help="comma list of variants to measure (default: every configuration)")
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args(argv)
    if not args.table:
        wanted = set(args.only.split(",")) if args.only else None
        for config in CONFIGS:
            if wanted and config["variant"] not in wanted:
                continue
            row = measure(config)
            with open(args.results, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            print(f"memory: {row['command']}: ok={row['result'].get('ok')}", flush=True)
    print(tables(args.results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
