"""Data-parallel speed: 1 worker against N workers at the same global batch, alternated, per backend; appends rows.

Not a test.  Each measurement is one ``nin train`` process tree, as users start it: ``--workers 1`` trains alone
(every core for its threads), ``--workers N`` through the framework's engine and launcher (cores / N threads per
worker).  The same epoch of ``--limit-train`` images at the quick recipe's 67x67 and batch 128 (64 per worker for
N = 2); the figure is the epoch's training rate (``images_per_s`` of metrics.jsonl: the training pass only, so
start-up, joining and evaluation are left out).  1 and N workers alternate (ABBA), so that the machine's load
weighs on both alike; the load average before and after each run is recorded with it.

    python -m benchmarks.distributed                        # every backend, 2 workers, 2 rounds
    python -m benchmarks.distributed --backend torch --rounds 3 --limit-train 6400

One JSON line per run is appended to ``benchmarks/results/distributed.jsonl`` (backend, workers, threads per
worker, images/s, precision, the machine with its CPU flags, the load, the commit); then a summary per backend:
the scaling efficiency = images/s with N workers / images/s with 1 worker (1.0: N workers as fast as one; on a
2-core machine the ideal is 1.0, since the cores are the same, not N times more).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

from nin_common.engine import registry
from nin_common.engine.distributed import split_threads
from nin_common.util.machine import available_cpus, cpu_flags, describe, git_commit, load_average

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RESULTS = os.path.join(HERE, "results", "distributed.jsonl")
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def one_run(backend: str, workers: int, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="nin-dist-bench-") as out:
        argv = [sys.executable, "-m", "nin_common.cli", "train", "--backend", backend, "--workers", str(workers),
                "--recipe", "quick", "--epochs", "1", "--limit-train", str(args.limit_train), "--limit-val",
                str(args.limit_val), "--precision", args.precision, "--device", "cpu", "--out", out, "--no-progress"]
        before = load_average()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
        after = load_average()
        if proc.returncode != 0:
            raise SystemExit(f"{backend} with {workers} worker(s) failed: {proc.stderr.strip()[-2000:]}")
        with open(os.path.join(out, "metrics.jsonl")) as f:
            row = [json.loads(line) for line in f if line.strip()][-1]
    return dict(backend=backend, workers=workers, threads_per_worker=split_threads(available_cpus(), workers),
                images_per_s=round(row["images_per_s"], 1), train_s=round(row["train_s"], 2),
                n_train=row["n_train"], image_size=row["image_size"], batch_size=row["batch_size"],
                precision=row["precision"], device=row["device"], load_before=before, load_after=after)


# The cost model of docs/distributed.md: nominal link bandwidths (bytes/s, one direction) and per-hop latencies
LINKS = {"10 GbE": (1.25e9, 25e-6), "100 Gb InfiniBand": (12.5e9, 3e-6), "NVLink 4 (H100 SXM)": (450e9, 8e-6)}
H100_BF16_FLOPS = 989e12  # dense bf16 peak of an H100 SXM
UTILISATION = 0.5         # the fraction of it a convolutional network's step is assumed to reach


def ring_allreduce_s(nbytes: float, workers: int, bandwidth: float, latency: float) -> float:
    """A ring all-reduce: 2(N-1) steps, each sending 1/N of the buffer and paying one latency."""
    return 2 * (workers - 1) * (nbytes / workers / bandwidth + latency)


def cost_model(workers=(2, 4, 8, 16, 64), batch: int = 128, image_size: int = 224) -> str:
    """The Markdown tables of docs/distributed.md: gradient all-reduce against compute per step."""
    from nin_common.arch import costs
    from nin_common.arch.variants import build_spec

    res = costs.resources(build_spec("chapter"), image_size, batch)
    params = res.totals["params"]
    step_flops = 3 * 2 * res.totals["macs"] * batch  # forward + two backward products, 2 FLOP per multiply-add
    compute = step_flops / (H100_BF16_FLOPS * UTILISATION)
    lines = [f"{params:,} parameters: {4 * params / 1e6:.2f} MB of float32 gradients ({2 * params / 1e6:.2f} MB in "
             f"bf16) per step. One step at batch {batch} and {image_size} px: {step_flops / batch / 1e9:.2f} GFLOP per "
             f"image, {step_flops / 1e9:.0f} GFLOP, {compute * 1e3:.2f} ms on one H100 at {UTILISATION:.0%} of its "
             f"bf16 peak.", "",
             "| link | " + " | ".join(f"N = {n}" for n in workers) + " |",
             "| --- | " + " | ".join("---:" for _ in workers) + " |"]
    for name, (bw, lat) in LINKS.items():
        cells = []
        for n in workers:
            comm = ring_allreduce_s(4 * params, n, bw, lat)
            cells.append(f"{comm * 1e3:.2f} ms / {compute / n * 1e3:.2f} ms" + (" **comm**" if comm > compute / n
                                                                                 else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="all", help="comma list or all")
    p.add_argument("--workers", type=int, default=2, help="the N compared with 1")
    p.add_argument("--rounds", type=int, default=2, help="ABBA rounds (each runs 1 and N workers once)")
    p.add_argument("--limit-train", type=int, default=3840, help="training images per run (30 global batches)")
    p.add_argument("--limit-val", type=int, default=256)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    p.add_argument("--timeout", type=float, default=1200)
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--model", action="store_true", help="print the cost model of docs/distributed.md and stop")
    args = p.parse_args()
    if args.model:
        print(cost_model())
        return 0
    names = registry.parse_list(args.backend)
    machine = describe()
    flags = sorted(f for f in FLAGS if f in cpu_flags())
    commit = git_commit(ROOT)
    date = datetime.datetime.now().isoformat(timespec="seconds")
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    for name in names:
        rates = {1: [], args.workers: []}
        for r in range(args.rounds):
            order = (1, args.workers) if r % 2 == 0 else (args.workers, 1)
            for workers in order:
                row = one_run(name, workers, args)
                row.update(round=r, date=date, commit=commit, machine=machine, cpu_flags=flags,
                           framework=registry.framework_version(name))
                rates[workers].append(row["images_per_s"])
                with open(args.results, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{name}: {workers} worker(s) x {row['threads_per_worker']} thread(s): "
                      f"{row['images_per_s']:,.1f} images/s (load {row['load_before'][0]:.2f} -> "
                      f"{row['load_after'][0]:.2f})", flush=True)
        one, many = statistics.median(rates[1]), statistics.median(rates[args.workers])
        print(f"{name}: scaling efficiency {many / one:.2f} ({args.workers} workers {many:,.1f} images/s against 1 "
              f"worker {one:,.1f}; medians of {args.rounds} rounds; CPU {machine['cpu']} {','.join(flags)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
