"""Where a training process's resident memory goes, phase by phase of ``nin train``'s epochs; appends rows.

Not a test.  Runs the study's recipe (``quick-b32``, fp32, ``--images`` training and 256 test images, 2 epochs) in
a fresh process per (backend, malloc setting), epoch by epoch through the steps ``nin train`` runs (the engine's
``train_epoch``, ``evaluate``, ``write_metrics``, ``save_training_checkpoint``), and records the process's
resident memory (Linux's ``VmRSS``) when data, model and trainer are ready, then after each phase of each epoch:
the training pass, the evaluation, writing the metrics and ``curves.png``, the checkpoint; with the peak so far
(``VmHWM``, counted from the ready point).  Each backend runs twice: with the library's ``keep_freed_memory``
(glibc's malloc keeps freed memory and serves large blocks from its heap; ``common/util/machine.py``) and without
(``NIN_KEEP_FREED_MEMORY=0``).  For JAX the row also gives XLA's own account of the compiled training step
(``memory_analysis()``: temporary buffers, arguments, outputs).

    python -m benchmarks.training_memory                  # every backend
    python -m benchmarks.training_memory --backend jax

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

from nin_common.engine import registry
from nin_common.util.machine import describe, git_commit, load_average, vector_flags

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RESULTS = os.path.join(HERE, "results", "training_memory.jsonl")
PHASES = ("train_epoch", "evaluate", "write_metrics", "save_training_checkpoint")
RECIPE, EPOCHS, TEST_IMAGES = "quick-b32", 2, 256


def xla_step_buffers(trainer, images, labels, image_size: int) -> dict:
    """XLA's buffer assignment for the JAX Trainer's training step, compiled again from the same parts (in MiB)."""
    import jax
    import numpy as np
    from nin_jax.training import compile_steps

    train_step = compile_steps(trainer.graphdef, trainer.optimizer, trainer.precision == "bf16")[0]
    x = jax.device_put(np.asarray(images, np.uint8), trainer.device)
    y = jax.device_put(np.asarray(labels, np.int32), trainer.device)
    stats = train_step.lower(trainer.params, trainer.opt_state, x, y, trainer.key,
                             image_size=image_size).compile().memory_analysis()
    return {name: round(getattr(stats, f"{name}_size_in_bytes") / 2**20, 1)
            for name in ("temp", "argument", "output")}


def _child(backend: str, images: int) -> None:  # pragma: no cover - runs in the measured process
    """``nin train``'s epochs, phase by phase, through the engine's public steps (``nin_common.engine.training``
    and ``runs``), with the resident memory read after each phase."""
    from nin_common.util import machine

    machine.thread_defaults()
    from nin_common.engine import checkpoint, data, recipes, runs, training

    settings = dict(recipes.resolve(RECIPE), epochs=EPOCHS, variant="chapter", seed=0, recipe=RECIPE,
                    precision="fp32", device="cpu", limit_train=images, limit_val=TEST_IMAGES)
    size, seed = settings["image_size"], settings["seed"]
    mod, impl = registry.load(backend), registry.part(backend, "training")
    train = data.load("train", None, images, progress=False)
    val = data.load("test", None, TEST_IMAGES, progress=False)
    model = impl.build_model("cpu", lr=settings["lr"], variant="chapter", seed=seed, init=settings["init"],
                             image_size=size)
    trainer = training.make_trainer(backend, model, settings["lr"], "cpu", "fp32")
    trace = [dict(phase="ready", rss_mb=round(machine.rss_mb(), 1))]
    machine.reset_peak_rss()

    def after(phase: str) -> None:
        trace.append(dict(phase=phase, rss_mb=round(machine.rss_mb(), 1),
                          peak_mb=round(machine.peak_rss_since_reset_mb(), 1)))

    def stop(step: int, loss: float, batch: int, n_batches: int) -> None:
        raise SystemExit(f"training_memory: the loss became {loss} at step {step}")

    rows, step = [], 0
    with tempfile.TemporaryDirectory(prefix="nin-training-memory-") as out:
        for epoch in range(1, EPOCHS + 1):
            trainer.reseed(training.epoch_seed(seed, epoch))
            train_loss, train_acc, _, step = training.train_epoch(trainer, train, settings, epoch, step, False, stop)
            after("train_epoch")
            val_loss, val_acc, _ = training.evaluate(trainer, val, settings["batch_size"], size, False)
            after("evaluate")
            rows.append(dict(epoch=epoch, epochs=EPOCHS, train_loss=train_loss, train_acc=train_acc,
                             val_loss=val_loss, val_acc=val_acc))
            runs.write_metrics(out, rows, f"NiN, {backend}, {size}x{size}")
            after("write_metrics")
            state = dict(format=checkpoint.STATE_FORMAT, backend=backend, epoch=epoch, step=step, elapsed_s=0.0,
                         settings=dict(settings, workers=1), rows=rows, native=checkpoint.native_name(backend),
                         canonical="model.npz", rng="")
            checkpoint.save_training_checkpoint(out, mod, trainer, model, state)
            after("save_training_checkpoint")
    row = dict(trace=trace)
    if backend == "jax":
        import numpy as np

        rng = np.random.default_rng(0)
        row["xla_train_step_mb"] = xla_step_buffers(trainer, rng.integers(0, 256, (32, 28, 28), np.uint8),
                                                    rng.integers(0, 10, 32), size)
    print(json.dumps(row))


def measure(backend: str, keep: bool, images: int) -> dict:
    env = dict(os.environ, NIN_KEEP_FREED_MEMORY="1" if keep else "0",
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.training_memory", "--child", backend, "--images",
                           str(images)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"training_memory: {backend} failed: {proc.stderr.strip()[-1500:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    ready = row["trace"][0]["rss_mb"]
    return dict(backend=backend, keep_freed_memory=keep, recipe=RECIPE, precision="fp32", batch_size=32,
                image_size=67, images=images, epochs=EPOCHS, ready_mb=ready,
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
