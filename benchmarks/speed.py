"""The project's training speed against the chapter's code, side by side, per backend; appends to a results file.

Not a test.  Each backend runs in a fresh process of its own, which:

1. builds the project's trainer (default precision, and fp32 when the default is another), runs its warm-up
   steps and reads the process's peak resident memory: the project alone, before the baseline exists;
2. times the input pipelines alone (the project's ``Trainer.prepare``; the chapter's resizing);
3. builds the chapter-style step (``chapter_baseline.py``), warms it up, then times baseline and project
   steps ALTERNATELY (ABBA order), so the load of a shared machine weighs on both alike;
4. prints images/s of each and the ratio (total over the rounds, and the median of the per-round ratios).

    python benchmarks/speed.py                                   # all backends, batch 128 at 224
    python benchmarks/speed.py --backend torch --rounds 3        # fewer steps

Targets (issue 5): default path >= 2.5x the chapter's images/s, fp32 path >= 1.3x, input pipeline >= 5x the
project's training rate, peak resident memory of training < 4 GB.  One JSON line per backend is appended to
``benchmarks/results/speed.jsonl``, with the machine, load average, thread settings and commit.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run from a checkout without installing
sys.path.insert(0, HERE)

from common import backends, training  # noqa: E402
from common.machine import describe, git_commit, load_average, peak_rss_mb, thread_defaults  # noqa: E402

RESULTS = os.path.join(HERE, "results", "speed.jsonl")
TARGETS = {"default_ratio": 2.5, "fp32_ratio": 1.3, "pipeline_over_training": 5.0, "peak_rss_mb_below": 4096}


def measure(backend: str, args) -> dict:
    """Everything for one backend, in this process (frameworks are imported here)."""
    from common import bench
    from chapter_baseline import make_step, prepare_batch

    bs, size = args.batch_size, args.image_size
    project = {"default": bench.make_trainer(backend, size, args.device, "auto")}
    if project["default"].precision != "fp32":
        project["fp32"] = bench.make_trainer(backend, size, args.device, "fp32")
    steps = {name: (lambda tr: lambda images, labels: tr.train_step(images, labels, size))(trainer)
             for name, trainer in project.items()}
    for step in steps.values():
        bench.seconds_each(step, bench.full_batches(bs, args.warmup, seed=1))
    rss_project = peak_rss_mb()  # the project's training alone: no baseline built yet
    pipeline = {name: bench.pipeline_rate(t, bs, size) for name, t in project.items()}
    chapter_prepare = lambda images, labels: prepare_batch(backend, images, size)  # noqa: E731
    bench.seconds_each(chapter_prepare, bench.full_batches(bs, 1, seed=2))
    baseline_pipeline = bench.rate(bs, bench.seconds_each(chapter_prepare, bench.full_batches(bs, 3, seed=3)))

    baseline = make_step(backend, bs, size)
    bench.seconds_each(baseline, bench.full_batches(bs, args.warmup, seed=1))
    runners = [("baseline", baseline)] + list(steps.items())
    times = {name: [] for name, _ in runners}
    load = [load_average()]
    for r in range(args.rounds):
        order = runners if r % 2 == 0 else runners[::-1]  # ABBA: drift in the load weighs on both
        for name, step in order:
            times[name] += bench.seconds_each(step, bench.full_batches(bs, 1, seed=10 + r))
        load.append(load_average())

    rates = {name: bench.rate(bs, t) for name, t in times.items()}
    paths = {}
    for name, trainer in project.items():
        per_round = [b / p for b, p in zip(times["baseline"], times[name])]
        paths[name] = dict(precision=trainer.precision, train_images_per_s=round(rates[name], 2),
                           ratio=round(rates[name] / rates["baseline"], 3),
                           ratio_median_of_rounds=round(statistics.median(per_round), 3),
                           ratio_rounds=[round(x, 3) for x in per_round], step_s=[round(t, 3) for t in times[name]],
                           pipeline_images_per_s=round(pipeline[name], 1),
                           pipeline_over_training=round(pipeline[name] / rates[name], 1))
    paths.setdefault("fp32", paths["default"])
    met = {"default_ratio": paths["default"]["ratio"] >= TARGETS["default_ratio"],
           "fp32_ratio": paths["fp32"]["ratio"] >= TARGETS["fp32_ratio"],
           "pipeline_over_training": min(p["pipeline_over_training"] for p in paths.values())
           >= TARGETS["pipeline_over_training"],
           "peak_rss_mb_below": rss_project < TARGETS["peak_rss_mb_below"]}
    return dict(
        backend=backend, date=datetime.datetime.now().isoformat(timespec="seconds"),
        framework=backends.framework_version(backend), device=project["default"].device_name,
        settings=dict(batch_size=bs, image_size=size, warmup=args.warmup, rounds=args.rounds, device=args.device),
        baseline=dict(train_images_per_s=round(rates["baseline"], 2), step_s=[round(t, 3) for t in times["baseline"]],
                      pipeline_images_per_s=round(baseline_pipeline, 1)),
        default=paths["default"], fp32=paths["fp32"], project_peak_rss_mb=round(rss_project, 1),
        process_peak_rss_mb=round(peak_rss_mb(), 1), load_avg_during=load, targets=TARGETS, targets_met=met,
        commit=git_commit(ROOT), machine=describe())


def summary(row: dict) -> str:
    d, f, b = row["default"], row["fp32"], row["baseline"]
    lines = [f"{row['backend']} ({row['framework']}, {row['device']}, batch {row['settings']['batch_size']} at "
             f"{row['settings']['image_size']}): chapter {b['train_images_per_s']:.1f} img/s; project default "
             f"({d['precision']}) {d['train_images_per_s']:.1f} img/s = {d['ratio']:.2f}x (median of rounds "
             f"{d['ratio_median_of_rounds']:.2f}x)"]
    if f is not d and f["precision"] != d["precision"]:
        lines.append(f"    fp32 {f['train_images_per_s']:.1f} img/s = {f['ratio']:.2f}x")
    lines.append(f"    input pipeline {d['pipeline_images_per_s']:.0f} img/s = {d['pipeline_over_training']:.0f}x "
                 f"training (chapter's: {b['pipeline_images_per_s']:.0f} img/s); peak resident memory "
                 f"{row['project_peak_rss_mb']:.0f} MiB; load {row['load_avg_during'][0]} -> "
                 f"{row['load_avg_during'][-1]}")
    lines.append("    targets met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in row["targets_met"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="all", help="torch, mxnet, tf, a comma-separated list, or all")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each path first (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="timed steps of each path, alternating (default 5)")
    p.add_argument("--device", default="auto", choices=training.DEVICES)
    p.add_argument("--results", default=RESULTS, help="the JSON-lines file results are appended to")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # measure one backend, print JSON
    args = p.parse_args(argv)
    names = backends.parse_list(args.backend)
    if args.child:
        print(json.dumps(measure(names[0], args), sort_keys=True))
        return 0
    thread_defaults()  # inherited by each backend's process: baseline and project run under the same settings
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    forwarded = [f"--batch-size={args.batch_size}", f"--image-size={args.image_size}", f"--warmup={args.warmup}",
                 f"--rounds={args.rounds}", f"--device={args.device}"]
    status = 0
    for name in names:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", f"--backend={name}", *forwarded],
                              stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            print(f"{name}: failed (exit {proc.returncode})", file=sys.stderr)
            status = 1
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["seconds"] = round(time.perf_counter() - start, 1)
        with open(args.results, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        print(summary(row), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
