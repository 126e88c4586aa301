"""The project's training speed against the chapter's code, side by side, per backend; appends to a results file.

Not a test.  For each backend two processes are started, so that each side runs as its users run it:

- the chapter's side (``benchmarks/chapter_baseline.py``) in a plain Python process: the framework imported as the
  chapter imports it, with its default threads and memory allocator;
- the project's side through its ``Trainer`` (default precision, and fp32 when the default is another), which
  is what ``nin train`` and ``fit`` run, with the settings the library makes (threads and memory allocator:
  ``nin_common.util.machine``; MXNet's own, made as ``nin_mxnet`` is imported).

Each process builds its side, warms it up and times its input pipeline alone; then this script asks them for
one training step at a time, ALTERNATELY (ABBA order), so the load of a shared machine weighs on both alike,
and prints images/s of each and the ratio (total over the rounds, and the median of the per-round ratios).
Both processes inherit the ``nin`` command's thread defaults (``OMP_WAIT_POLICY=PASSIVE``).

    python -m benchmarks.speed                                   # all backends, batch 128 at 224
    python -m benchmarks.speed --backend torch --rounds 3        # fewer steps

Targets: default path >= 2.5x the chapter's images/s, fp32 path >= 1.3x, input pipeline >= 5x the
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

from nin_common.arch import costs, variants
from nin_common.engine import registry
from nin_common.engine.precision import DEVICES
from nin_common.util.machine import (describe, git_commit, load_average, nominal_fp32_peak, peak_rss_mb,
                                 thread_defaults)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RESULTS = os.path.join(HERE, "results", "speed.jsonl")
TARGETS = {"default_ratio": 2.5, "fp32_ratio": 1.3, "pipeline_over_training": 5.0, "peak_rss_mb_below": 4096}
REPLY = "@speed "  # marks the lines of the protocol on a side's stdout (frameworks may print there too)
SIDES = ("baseline", "project")


def _say(message: dict) -> None:
    print(REPLY + json.dumps(message), flush=True)


def serve(side: str, backend: str, args) -> None:
    """One side, in this process: build and warm up, report, then run the steps asked for on stdin.

    Replies (one ``REPLY`` line each): first ``{"paths": {name: precision}, "pipeline_images_per_s": {name:
    rate}, "device", "machine", "framework"}``; then ``{"seconds": s}`` for each ``{"step": name, "seed": k}`` asked; last,
    for ``{"step": null}``, ``{"peak_rss_mb": m}`` and the process exits.
    """
    from nin_common.tools import bench

    bs, size = args.batch_size, args.image_size
    if side == "baseline":
        from benchmarks.chapter_baseline import make_step, prepare_batch
        prepare = lambda images, labels: prepare_batch(backend, images, size)  # noqa: E731
        bench.seconds_each(prepare, bench.full_batches(bs, 1, seed=2))
        pipeline = {"baseline": bench.rate(bs, bench.seconds_each(prepare, bench.full_batches(bs, 3, seed=3)))}
        steps, paths, device = {"baseline": make_step(backend, bs, size)}, {"baseline": "fp32"}, "chapter's default"
    else:
        project = {"default": bench.make_trainer(backend, size, args.device, "auto")}
        if project["default"].precision != "fp32":
            project["fp32"] = bench.make_trainer(backend, size, args.device, "fp32")
        steps = {name: (lambda tr: lambda images, labels: tr.train_step(images, labels, size))(trainer)
                 for name, trainer in project.items()}
        pipeline = {name: bench.pipeline_rate(t, bs, size) for name, t in project.items()}
        paths = {name: t.precision for name, t in project.items()}
        device = project["default"].device_name
    for step in steps.values():
        bench.seconds_each(step, bench.full_batches(bs, args.warmup, seed=1))
    _say(dict(paths=paths, pipeline_images_per_s=pipeline, device=device, machine=describe(),
              framework=registry.framework_version(backend)))
    for line in sys.stdin:
        ask = json.loads(line)
        if ask["step"] is None:
            break
        _say({"seconds": bench.seconds_each(steps[ask["step"]], bench.full_batches(bs, 1, seed=ask["seed"]))[0]})
    _say({"peak_rss_mb": peak_rss_mb()})


class Side:
    """A side's process, driven over its stdin and stdout."""

    def __init__(self, side: str, backend: str, args):
        self.side = side
        forwarded = [f"--batch-size={args.batch_size}", f"--image-size={args.image_size}",
                     f"--warmup={args.warmup}", f"--device={args.device}"]
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.speed", f"--serve={side}",
                                      f"--backend={backend}", *forwarded], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        raise RuntimeError(f"the {self.side} process ended without replying (exit {self.proc.wait()})")

    def ask(self, step, seed: int = 0) -> dict:
        self.proc.stdin.write(json.dumps({"step": step, "seed": seed}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict:
        reply = self.ask(None)
        self.proc.stdin.close()
        self.proc.wait()
        return reply

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def measure(backend: str, args) -> dict:
    """Everything for one backend: its two sides in processes of their own (this one imports no framework)."""
    sides = {}
    try:
        for side in SIDES:  # one after the other: building and warming up do not overlap
            sides[side] = Side(side, backend, args)
        runners = [(sides[side], name) for side in SIDES for name in sides[side].hello["paths"]]
        times = {name: [] for _, name in runners}
        load = [load_average()]
        for r in range(args.rounds):
            for side, name in (runners if r % 2 == 0 else runners[::-1]):  # ABBA: load drift weighs on both
                times[name].append(side.ask(name, seed=10 + r)["seconds"])
            load.append(load_average())
        peak = {side: sides[side].close()["peak_rss_mb"] for side in SIDES}
    finally:
        for side in sides.values():
            side.kill()

    bs = args.batch_size
    base, proj = sides["baseline"].hello, sides["project"].hello
    rates = {name: bs * len(t) / sum(t) for name, t in times.items()}
    paths = {}
    for name, precision in proj["paths"].items():
        per_round = [b / p for b, p in zip(times["baseline"], times[name])]
        pipeline = proj["pipeline_images_per_s"][name]
        paths[name] = dict(precision=precision, train_images_per_s=round(rates[name], 2),
                           ratio=round(rates[name] / rates["baseline"], 3),
                           ratio_median_of_rounds=round(statistics.median(per_round), 3),
                           ratio_rounds=[round(x, 3) for x in per_round], step_s=[round(t, 3) for t in times[name]],
                           pipeline_images_per_s=round(pipeline, 1),
                           pipeline_over_training=round(pipeline / rates[name], 1))
    paths.setdefault("fp32", paths["default"])
    # the arithmetic: a training image costs 3x the forward multiply-adds (forward, input and weight gradients),
    # 2 FLOP each; achieved GFLOP/s = images/s x that, against the cores' nominal fp32 peak (fp32 path only)
    gflop = training_gflop(args.image_size)
    peak_fp32 = nominal_fp32_peak()
    for name, path in paths.items():
        path["achieved_gflops"] = round(path["train_images_per_s"] * gflop, 1)
    if peak_fp32:
        paths["fp32"]["fraction_of_fp32_peak"] = round(paths["fp32"]["achieved_gflops"] / peak_fp32["gflops"], 3)
    met = {"default_ratio": paths["default"]["ratio"] >= TARGETS["default_ratio"],
           "fp32_ratio": paths["fp32"]["ratio"] >= TARGETS["fp32_ratio"],
           "pipeline_over_training": min(p["pipeline_over_training"] for p in paths.values())
           >= TARGETS["pipeline_over_training"],
           "peak_rss_mb_below": peak["project"] < TARGETS["peak_rss_mb_below"]}
    return dict(
        backend=backend, date=datetime.datetime.now().isoformat(timespec="seconds"),
        framework=proj["framework"], device=proj["device"],
        settings=dict(batch_size=bs, image_size=args.image_size, warmup=args.warmup, rounds=args.rounds,
                      device=args.device, processes="separate"),
        baseline=dict(train_images_per_s=round(rates["baseline"], 2), step_s=[round(t, 3) for t in times["baseline"]],
                      pipeline_images_per_s=round(base["pipeline_images_per_s"]["baseline"], 1),
                      peak_rss_mb=round(peak["baseline"], 1), machine=base["machine"]),
        default=paths["default"], fp32=paths["fp32"], project_peak_rss_mb=round(peak["project"], 1),
        gflop_per_training_image=round(gflop, 4), nominal_fp32_peak=peak_fp32,
        baseline_achieved_gflops=round(rates["baseline"] * gflop, 1),
        load_avg_during=load, targets=TARGETS, targets_met=met, commit=git_commit(ROOT), machine=proj["machine"])


def training_gflop(image_size: int) -> float:
    """GFLOP of one training image of the chapter's network: 3 x forward multiply-adds x 2 FLOP."""
    macs = costs.resources(variants.build_spec("chapter"), image_size).totals["macs"]
    return 3 * 2 * macs / 1e9


def summary(row: dict) -> str:
    d, f, b = row["default"], row["fp32"], row["baseline"]
    lines = [f"{row['backend']} ({row['framework']}, {row['device']}, batch {row['settings']['batch_size']} at "
             f"{row['settings']['image_size']}): chapter {b['train_images_per_s']:.1f} img/s; project default "
             f"({d['precision']}) {d['train_images_per_s']:.1f} img/s = {d['ratio']:.2f}x (median of rounds "
             f"{d['ratio_median_of_rounds']:.2f}x)"]
    if f is not d and f["precision"] != d["precision"]:
        lines.append(f"    fp32 {f['train_images_per_s']:.1f} img/s = {f['ratio']:.2f}x")
    peak = row.get("nominal_fp32_peak")
    lines.append(f"    fp32 {f['achieved_gflops']:.1f} GFLOP/s ({row['gflop_per_training_image']:.3f} GFLOP a training "
                 f"image)" + (f" = {f['fraction_of_fp32_peak']:.0%} of the nominal fp32 peak, {peak['gflops']:.0f} "
                              f"GFLOP/s: {peak['formula']}" if peak else "; the CPU's nominal peak is unknown"))
    lines.append(f"    input pipeline {d['pipeline_images_per_s']:.0f} img/s = {d['pipeline_over_training']:.0f}x "
                 f"training (chapter's: {b['pipeline_images_per_s']:.0f} img/s); peak resident memory "
                 f"{row['project_peak_rss_mb']:.0f} MiB; load {row['load_avg_during'][0]} -> "
                 f"{row['load_avg_during'][-1]}")
    lines.append("    targets met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in row["targets_met"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="all",
                   help=f"{', '.join(registry.BACKENDS)}, a comma-separated list, or all")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each path first (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="timed steps of each path, alternating (default 5)")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--results", default=RESULTS, help="the JSON-lines file results are appended to")
    p.add_argument("--serve", choices=SIDES, help=argparse.SUPPRESS)  # run one side, driven over stdin/stdout
    args = p.parse_args(argv)
    names = registry.parse_list(args.backend)
    if args.serve:
        serve(args.serve, names[0], args)
        return 0
    thread_defaults()  # inherited by both sides' processes
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    status = 0
    for name in names:
        start = time.perf_counter()
        try:
            row = measure(name, args)
        except RuntimeError as err:
            print(f"{name}: failed ({err})", file=sys.stderr)
            status = 1
            continue
        row["seconds"] = round(time.perf_counter() - start, 1)
        with open(args.results, "a") as f:
            f.write(json.dumps(row, sort_keys=True, allow_nan=False) + "\n")
        print(summary(row), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
