"""How fast the project trains and predicts in one backend, written once for every backend: what ``nin bench`` runs.

Everything goes through the training adapter (``nin_common.engine.training``'s contract): ``Trainer.train_step`` for
training (one host-device synchronisation a step, for its loss and accuracy), ``eval_step`` for inference
(dropout off), ``prepare`` for the input pipeline alone.  The images are synthetic Fashion-MNIST-shaped
batches (uint8 28x28, random), cut by ``data.batches`` as in training, so nothing needs downloading and the
speed is that of real data (the work does not depend on the pixel values).
"""
from __future__ import annotations

import statistics
import textwrap
import time
from typing import Callable, List, Optional

import numpy as np

from nin_common.engine import data, registry, training
from nin_common.engine.precision import DEVICES, check_precision
from nin_common.util import machine
from nin_common.arch.shapes import min_image_size
from nin_common.arch.variants import build_spec
from nin_common.util.values import check_choice, check_int

LR = 0.05  # the chapter's learning rate


def synthetic_split(n: int, seed: int = 0) -> data.Split:
    """``n`` random Fashion-MNIST-shaped examples (uint8 (n, 28, 28) images, int64 labels)."""
    rng = np.random.default_rng(seed)
    return data.Split("synthetic", rng.integers(0, 256, (n, data.IMAGE_SIDE, data.IMAGE_SIDE), dtype=np.uint8),
                      rng.integers(0, data.NUM_CLASSES, n).astype(np.int64), "synthetic")


def full_batches(batch_size: int, count: int, seed: int = 0):
    """``count`` shuffled training batches of exactly ``batch_size`` examples (an iterator)."""
    return data.batches(synthetic_split(batch_size * count, seed), batch_size, shuffle=True, seed=seed)


def seconds_each(step: Callable[[np.ndarray, np.ndarray], object], batches) -> List[float]:
    """Run ``step(images, labels)`` on each batch; the seconds each call took, batch fetching included."""
    times, it = [], iter(batches)
    while True:
        start = time.perf_counter()
        try:
            images, labels = next(it)
        except StopIteration:
            return times
        step(images, labels)
        times.append(time.perf_counter() - start)


def rate(images_per_call: int, times: List[float]) -> float:
    """Images per second over the timed calls."""
    return images_per_call * len(times) / sum(times)


def make_trainer(backend: str, image_size: int, device: str = "auto", precision: str = "auto", seed: int = 0):
    """The project's trainer for a new Kaiming-initialised chapter network on the device."""
    impl = registry.part(backend, "training")
    model = impl.build_model(device, lr=LR, seed=seed, init="kaiming", image_size=image_size)
    return training.make_trainer(backend, model, LR, device, precision)


def pipeline_rate(trainer, batch_size: int, image_size: int, batches: int = 10) -> float:
    """Images/s of the input pipeline alone: batching, transfer, scaling and resizing (``Trainer.prepare``)."""
    prepare = lambda images, labels: trainer.prepare(images, labels, image_size)  # noqa: E731
    seconds_each(prepare, full_batches(batch_size, 1, seed=1))  # warm-up (a graph is traced once, say)
    return rate(batch_size, seconds_each(prepare, full_batches(batch_size, batches, seed=2)))


def check_args(backend: str, batch_size: int, image_size: int, steps: int, warmup: int, device: str,
               precision: str, latency_runs: int = 1) -> None:
    registry.load(backend)  # names the extra to install when the framework is missing
    for name, value, least in (("batch_size", batch_size, 1), ("steps", steps, 1), ("warmup", warmup, 0),
                               ("latency_runs", latency_runs, 1)):
        check_int(name, value, least=least)
    check_int("image_size", image_size, least=min_image_size(build_spec("chapter")))
    check_choice("device", device, DEVICES)
    check_precision(precision)


def run(backend: str, batch_size: int = 128, image_size: int = 224, steps: int = 5, warmup: int = 2,
        device: str = "auto", precision: str = "auto", latency_runs: int = 10,
        say: Optional[Callable[[str], None]] = None) -> dict:
    """Training images/s, inference images/s (batch), batch-1 latency, input pipeline images/s and peak memory.

    ``warmup`` untimed training steps come first (allocation, graph tracing), then ``steps`` timed ones;
    inference is timed over ``steps`` batches after one untimed, latency is the median over ``latency_runs``
    single images.  ``peak_memory_mb``: the GPU's peak on a GPU, else the process's peak
    resident memory (framework included).
    """
    check_args(backend, batch_size, image_size, steps, warmup, device, precision, latency_runs)
    say = say or (lambda text: None)
    trainer = make_trainer(backend, image_size, device, precision)
    train = lambda images, labels: trainer.train_step(images, labels, image_size)  # noqa: E731
    infer = lambda images, labels: trainer.eval_step(images, labels, image_size)  # noqa: E731

    say(f"training: {warmup} warm-up + {steps} timed steps of {batch_size} at {image_size}x{image_size}")
    seconds_each(train, full_batches(batch_size, warmup, seed=3))
    train_s = seconds_each(train, full_batches(batch_size, steps, seed=4))
    say(f"inference: 1 warm-up + {steps} timed batches of {batch_size}, then {latency_runs} single images")
    seconds_each(infer, full_batches(batch_size, 1, seed=5))
    infer_s = seconds_each(infer, full_batches(batch_size, steps, seed=6))
    seconds_each(infer, full_batches(1, 3, seed=7))
    latency_s = seconds_each(infer, full_batches(1, latency_runs, seed=8))
    say("input pipeline alone")
    pipeline = pipeline_rate(trainer, batch_size, image_size)
    peak = trainer.peak_memory_mb()
    return dict(
        backend=backend, framework=registry.framework_version(backend), device=trainer.device_name,
        precision=trainer.precision, requested_precision=precision, batch_size=batch_size, image_size=image_size,
        steps=steps, warmup=warmup, train_images_per_s=rate(batch_size, train_s),
        train_step_s=[round(t, 4) for t in train_s], infer_images_per_s=rate(batch_size, infer_s),
        latency_ms=1000 * statistics.median(latency_s), pipeline_images_per_s=pipeline,
        peak_memory_mb=peak if peak is not None else machine.peak_rss_mb(), peak_rss_mb=machine.peak_rss_mb(),
        load_avg=machine.load_average(), threads=machine.describe()["env"])


def report(result: dict) -> str:
    """The lines ``nin bench`` prints for people."""
    r = result
    memory = "GPU peak" if r["peak_memory_mb"] != r["peak_rss_mb"] else "peak resident"
    return "\n".join([
        f"{r['framework']} on {r['device']}, precision {r['precision']}",  # a GPU's name is long
        f"batch {r['batch_size']}, {r['image_size']}x{r['image_size']}, {r['steps']} timed steps after "
        f"{r['warmup']} warm-up",
        f"  training        {r['train_images_per_s']:10.1f} images/s",
        f"  inference       {r['infer_images_per_s']:10.1f} images/s (batch {r['batch_size']})",
        f"  latency         {r['latency_ms']:10.1f} ms (batch 1, median)",
        f"  input pipeline  {r['pipeline_images_per_s']:10.1f} images/s "
        f"({r['pipeline_images_per_s'] / r['train_images_per_s']:.0f}x training)",
        f"  memory          {r['peak_memory_mb']:10.1f} MiB ({memory})",
        f"  load average    {r['load_avg']}",
        textwrap.fill(" ".join(f"{k}={v}" for k, v in r["threads"].items()) or "framework defaults", width=80,
                      initial_indent="  threads         ", subsequent_indent=" " * 18, break_on_hyphens=False)])
