"""How near each float32 model comes to its measured bound in ``nin parity``: runs of every backend over sizes and seeds.

For each (image size, seed) the float32 ``grads`` and ``steps`` checks run (each backend's float32 model against
its own float64 copy, ``nin_common.tools.parity``); for each backend and check the worst ratio of the error to its
bound is kept (1.0 would be on the bound).  One JSON line per run is appended to
``benchmarks/results/parity.jsonl``, with the machine, its CPU flags, the load and the commit.

    python -m benchmarks.parity_bounds                       # 8 runs, all installed backends
    python -m benchmarks.parity_bounds --runs 67:0 99:3      # size:seed pairs
    python -m benchmarks.parity_bounds --workers              # nin parity --workers 2's check, per backend

With ``--workers`` each backend's data-parallel check (``nin_common.tools.parity.dataparallel``, the command's defaults)
runs instead, and the row keeps, per precision, the tensor with the largest workers-against-one-process difference
and the one nearest its bound.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile

from nin_common.engine import registry
from nin_common.tools import parity
from nin_common.tools.parity import dataparallel
from nin_common.util.machine import cpu_flags, describe, git_commit, load_average

RUNS = ("67:0", "67:1", "72:2", "99:3", "99:4", "72:5", "72:7", "67:9")
OUT = os.path.join(os.path.dirname(__file__), "results", "parity.jsonl")
CHECKS = ("loss", "grads", "sgd step", "steps")


def worst_ratios(diffs, backend: str) -> dict:
    """Per check: the largest ``error / bound`` of a backend's float32 items, and the item."""
    out = {}
    for check in CHECKS:
        items = [d for d in diffs if d.pair == f"{backend} float32 vs float64" and d.check == check]
        worst = max(items, key=lambda d: d.rel / d.tol)
        out[check] = {"ratio": round(worst.rel / worst.tol, 4), "item": worst.item, "passed": worst.passed}
    return out


def machine_fields() -> dict:
    return {"machine": describe(), "load": load_average(),
            "cpu_flags": sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}),
            "env": {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS") if k in os.environ},
            "commit": git_commit(os.path.dirname(os.path.abspath(__file__)))}


def workers_row(backend: str) -> dict:
    """``nin parity --workers 2``'s comparison for one backend, at its defaults."""
    start = machine_fields()
    with tempfile.TemporaryDirectory(prefix="nin-parity-") as folder:
        results = dataparallel.compare(backend, folder)
    worst = {}
    for dtype in dataparallel.DTYPES:
        rows = [r for r in results if r.dtype == dtype]
        largest = max(rows, key=lambda r: r.max_abs)
        worst[dtype] = {"largest": {"item": largest.item, "max_abs": largest.max_abs, "rel": largest.rel,
                                    "tol": largest.tol}, "passed": all(r.passed for r in rows)}
    return dict(start, check="workers", backend=backend, settings=dataparallel.DEFAULTS, worst=worst,
                date=datetime.datetime.now().isoformat(timespec="seconds"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.parity_bounds", description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="all", help="comma list of backends, or all (the installed ones)")
    p.add_argument("--runs", nargs="+", default=list(RUNS), help="image size:seed pairs")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", default=OUT)
    p.add_argument("--workers", action="store_true", help="the data-parallel check instead")
    args = p.parse_args(argv)
    names = registry.parse_list(args.backend)
    if args.workers:
        for name in names:
            row = workers_row(name)
            with open(args.out, "a") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            f32 = row["worst"]["float32"]
            print(f"{name}: float32 {'pass' if f32['passed'] else 'FAIL'}, largest difference "
                  f"{f32['largest']['max_abs']:.2e} in {f32['largest']['item']}", flush=True)
        return 0
    mods = [registry.load(n) for n in names]
    for run in args.runs:
        size, seed = (int(v) for v in run.split(":"))
        start = machine_fields()
        diffs = parity.run_checks(mods, ["grads", "steps"], image_size=size, seed=seed, steps=args.steps,
                                  grad_dtype="float32")
        row = dict(start, check="float32", date=datetime.datetime.now().isoformat(timespec="seconds"),
                   image_size=size, seed=seed, batch=4, steps=args.steps, draws=parity.DRAWS,
                   worst={n: worst_ratios(diffs, n) for n in names})
        with open(args.out, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        top = max((c["ratio"], n, check) for n in names for check, c in row["worst"][n].items())
        print(f"{size} px, seed {seed}: worst {top[0]:.2f} of the bound ({top[1]}, {top[2]})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
