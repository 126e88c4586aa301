"""Training time per epoch and memory of each exercise variant, measured on a real training run on a quiet
machine, at the study's settings; appends rows.

Not a test.  The exercise study's own seconds per epoch are measured while other work may share the cores (its
runs take hours, in the background); this script gives the time a reader can compare: one short ``nin train``
per variant (the study's recipe ``quick-b32`` in fp32, 2 epochs of ``--images`` training images, 256 test
images; ``--recipe``, ``--image-size`` and ``--precision`` for the study's runs at another size), one after the other, started only when the 1-minute load average is below ``--quiet`` (it waits up to
``--wait`` seconds for it, else refuses), with the load before and after each run recorded.  The figure is the
second epoch's training pass in images/s (``metrics.jsonl``: start-up and evaluation left out; the first epoch
also pays for tracing and compiling the step, seconds in TensorFlow and JAX), and the epoch of 60,000 images it
implies; against the multiply-adds it gives the achieved GFLOP/s (images/s x 3 passes x 2 FLOP x the
multiply-adds of an image) and their fraction of the CPU's nominal fp32 peak.  Memory, from the same run
(``nin train`` records it in each metrics row): the process's resident memory once data, model and trainer are
ready, the peak from there to the end of the run (training and evaluation), and the process's peak, next to the
analytic training memory of the spec at the run's batch and image size (``nin resources``).

    python -m benchmarks.variant_speed                        # the study's variants, PyTorch
    python -m benchmarks.variant_speed --variants chapter,3x3 --backend mxnet --images 6400
    python -m benchmarks.variant_speed --variants chapter --backend all
    python -m benchmarks.variant_speed --variants chapter,fc-head,gradual --recipe quick-nesterov --image-size 131 \
        --precision bf16

One JSON line per run is appended to ``benchmarks/results/variant_speed.jsonl`` (variant, backend, images/s,
seconds per 60,000-image epoch, multiply-adds, achieved GFLOP/s and its fraction of the nominal peak, the memory
figures, threads, the machine with its CPU flags, the loads, the commit).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

from nin_common.arch.costs import resources
from nin_common.arch.variants import build_spec
from nin_common.engine import registry
from nin_common.util.machine import (available_cpus, cpu_flags, describe, git_commit, load_average,
                                 nominal_fp32_peak)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RESULTS = os.path.join(HERE, "results", "variant_speed.jsonl")
VARIANTS = ("chapter", "1x1-0", "1x1-1", "1x1-3", "3x3", "fc-head", "fc-head-wide", "gradual")
FLAGS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}


def wait_quiet(limit: float, wait_s: float) -> float:
    deadline = time.monotonic() + wait_s
    while True:
        load = load_average()[0]
        if load <= limit:
            return load
        if time.monotonic() > deadline:
            raise SystemExit(f"expected a 1-minute load average of at most {limit:g} to time on, got {load:.2f} "
                             f"after waiting {wait_s:g} s: stop what runs, then start again")
        time.sleep(5)


def one_run(variant: str, backend: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="nin-variant-speed-") as out:
        argv = [sys.executable, "-m", "nin_common.cli", "train", "--backend", backend, "--variant", variant,
                "--recipe", args.recipe, "--precision", args.precision, "--epochs", "2", "--limit-train",
                str(args.images), "--limit-val", "256", "--device", "cpu", "--out", out, "--no-progress"]
        if args.image_size:
            argv += ["--image-size", str(args.image_size)]
        before = load_average()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        after = load_average()
        if proc.returncode != 0:
            raise SystemExit(f"{variant} failed: {proc.stderr.strip()[-1500:]}")
        with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
            row = [json.loads(line) for line in f if line.strip()][-1]
    cost = resources(build_spec(variant), row["image_size"], row["batch_size"])
    macs, rate, peak = cost.totals["macs"], row["images_per_s"], nominal_fp32_peak()
    gflops = rate * 3 * 2 * macs / 1e9
    return dict(variant=variant, backend=backend, recipe=args.recipe, precision=row["precision"],
                image_size=row["image_size"], batch_size=row["batch_size"], images=args.images,
                timed_epoch=row["epoch"],
                images_per_s=rate, epoch_s_60000=60000 / rate, macs_per_image=macs,
                achieved_gflops=gflops, nominal_fp32_peak_gflops=peak and peak["gflops"],
                fraction_of_fp32_peak=peak and round(gflops / peak["gflops"], 3),
                train_memory_analytic_mb=round(cost.memory.train / 2**20, 1), rss_start_mb=row.get("rss_start_mb"),
                train_peak_rss_mb=row.get("train_peak_rss_mb"), peak_rss_mb=row.get("peak_rss_mb"),
                threads=available_cpus(), load_before=before,
                load_after=after, date=datetime.datetime.now().isoformat(timespec="seconds"),
                commit=git_commit(ROOT), machine=describe(), cpu_flags=sorted(cpu_flags() & FLAGS))


def _mib(value) -> str:
    return "?" if value is None else f"{value:,.0f} MiB"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--backend", default="torch", help="torch, mxnet, tf, jax, a comma-separated list, or all")
    p.add_argument("--recipe", default="quick-b32")
    p.add_argument("--images", type=int, default=3200, help="training images per run (100 batches of 32)")
    p.add_argument("--image-size", type=int, help="images resized to this instead of the recipe's (the study's "
                                                  "--image-size)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="fp32 (the study's recipe), or bf16 where the CPU computes it")
    p.add_argument("--quiet", type=float, default=1.0, help="the 1-minute load average to start under")
    p.add_argument("--wait", type=float, default=300.0, help="seconds to wait for it")
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args(argv)
    try:
        backends = registry.parse_list(args.backend)
    except ValueError as err:
        p.error(str(err))
    load = wait_quiet(args.quiet, args.wait)
    print(f"variant_speed: the 1-minute load is {load:.2f}; timing {args.variants} in {args.backend}", flush=True)
    for backend, variant in [(b, v) for b in backends for v in args.variants.split(",")]:
        row = one_run(variant, backend, args)
        with open(args.results, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        share = f" ({row['fraction_of_fp32_peak']:.0%} of the peak)" if row["fraction_of_fp32_peak"] else ""
        print(f"{variant} / {backend}: {row['images_per_s']:,.1f} images/s, {row['epoch_s_60000']:.0f} s per "
              f"60,000-image epoch, {row['achieved_gflops']:.1f} GFLOP/s{share}; resident memory "
              f"{_mib(row['rss_start_mb'])} ready, {_mib(row['train_peak_rss_mb'])} at the training's peak (analytic "
              f"training memory {row['train_memory_analytic_mb']:.1f} MiB); load {row['load_before'][0]:.2f} -> "
              f"{row['load_after'][0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
