"""Where a training process's resident memory goes, phase by phase of a real ``nin train``; appends rows.

Not a test.  Runs the study's recipe (``quick-b32``, fp32, ``--images`` training and 256 test images, 2 epochs) in
a fresh process per (backend, malloc setting) and records the process's resident memory (Linux's ``VmRSS``) when
data, model and trainer are ready, then after each phase of each epoch: the training pass, the evaluation,
writing the metrics and ``curves.png``, the checkpoint; with the peak so far (``VmHWM``, counted from the ready
point).  Each backend runs twice: with the library's ``keep_freed_memory`` (glibc's malloc keeps freed memory
and serves large blocks from its heap; ``common/util/machine.py``) and without (``NIN_KEEP_FREED_MEMORY=0``).
For JAX the row also gives XLA's own account of the compiled training step (``memory_analysis()``: temporary
buffers, arguments, outputs).

    python benchmarks/training_memory.py                  # every backend
    python benchmarks/training_memory.py --backend jax

One JSON line per process is appended to ``benchmarks/results/training_memory.jsonl``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from nin_common.engine import registry  # noqa: E402
from nin_common.util.machine import describe, git_commit, load_average, vector_flags  # noqa: E402

RESULTS = os.path.join(HERE, "results", "training_memory.jsonl")
PHASES = ("train_epoch", "evaluate", "write_metrics", "save_training_checkpoint")


def _xla_step_buffers(trainer, images, labels, image_size: int) -> dict:
    """XLA's buffer assignment for the compiled training step, in MiB."""
    x, y = trainer._batch(images, labels)
    compiled = trainer._train.lower(trainer.params, trainer.opt_state, x, y, trainer.key,
                                    image_size=image_size).compile()
    stats = compiled.memory_analysis()
    return {name: round(getattr(stats, f"{name}_size_in_bytes") / 2**20, 1)
            for name in ("temp", "argument", "output")}


def _child(backend: str, images: int) -> None:  # pragma: no cover - runs in the measured process
    from nin_common.util import machine

    machine.thread_defaults()
    import nin_common.engine.training as training

    trace, made = [], {}

    def wrapped(name):
        inner = getattr(training, name)

        def call(*args, **kwargs):
            result = inner(*args, **kwargs)
            trace.append(dict(phase=name, rss_mb=round(machine.rss_mb(), 1),
                              peak_mb=round(machine.peak_rss_since_reset_mb(), 1)))
            return result
        return call

    for name in PHASES:
        setattr(training, name, wrapped(name))
    reset, make = training.reset_peak_rss, training.make_trainer

    def ready():
        trace.append(dict(phase="ready", rss_mb=round(machine.rss_mb(), 1)))
        return reset()

    def trainer_made(*args, **kwargs):
        made["trainer"] = make(*args, **kwargs)
        return made["trainer"]

    training.reset_peak_rss, training.make_trainer = ready, trainer_made
    with tempfile.TemporaryDirectory(prefix="nin-training-memory-") as out:
        training.run(backend, recipe="quick-b32", epochs=2, limit_train=images, limit_val=256, precision="fp32",
                     device="cpu", out=out, progress=False)
    row = dict(trace=trace)
    if backend == "jax":
        import numpy as np

        rng = np.random.default_rng(0)
        row["xla_train_step_mb"] = _xla_step_buffers(made["trainer"], rng.integers(0, 256, (32, 28, 28), np.uint8),
                                                     rng.integers(0, 10, 32), 67)
    print(json.dumps(row))


def measure(backend: str, keep: bool, images: int) -> dict:
    env = dict(os.environ, NIN_KEEP_FREED_MEMORY="1" if keep else "0",
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", backend, "--images", str(images)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"training_memory: {backend} failed: {proc.stderr.strip()[-1500:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    ready = row["trace"][0]["rss_mb"]
    return dict(backend=backend, keep_freed_memory=keep, recipe="quick-b32", precision="fp32", batch_size=32,
                image_size=67, images=images, epochs=2, ready_mb=ready,
                peak_over_ready_mb=round(max(p["peak_mb"] for p in row["trace"][1:]) - ready, 1), **row,
                load_avg=load_average(), date=datetime.datetime.now().isoformat(timespec="seconds"),
                commit=git_commit(ROOT), machine=describe(), cpu_flags=vector_flags())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="all", help="torch, mxnet, tf, jax, a comma-separated list, or all")
    p.add_argument("--images", type=int, default=3200, help="training images per epoch (100 batches of 32)")
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child, args.images)
        return 0
    try:
        backends = registry.parse_list(args.backend)
    except ValueError as err:
        p.error(str(err))
    for backend in backends:
        for keep in (True, False):
            row = measure(backend, keep, args.images)
            with open(args.results, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            steps = ", ".join(f"{t['phase']} {t['rss_mb'] - row['ready_mb']:+.0f}" for t in row["trace"][1:])
            xla = row.get("xla_train_step_mb")
            print(f"{backend}, {'keeping freed memory' if keep else 'default malloc'}: ready {row['ready_mb']:.0f} "
                  f"MiB; peak {row['peak_over_ready_mb']:+.0f} MiB over it; after each phase: {steps}"
                  + (f"; XLA's training step: {xla}" if xla else ""), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
