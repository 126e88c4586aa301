"""Where a training step's time goes, per operator, measured by the framework's own profiler; appends rows.

Not a test.  Builds the backend's ``Trainer`` (float32, the chapter's network, ``kaiming-alive``), warms it up,
then profiles ``--steps`` SGD steps on one batch and groups the time by operator type:

- PyTorch: ``torch.profiler`` (self CPU time per ``aten::`` operator);
- TensorFlow: ``tf.profiler`` (the host trace; the time of each executed op by its type).  ``--graph`` picks the
  step: ``default`` (what ``nin train`` runs: TensorFlow's graph, op by op, with oneDNN's kernels unless
  ``TF_ENABLE_ONEDNN_OPTS=0``) or ``xla`` (the same step XLA-compiled, ``jit_compile``: one cluster, which the
  trace does not divide further).

``--per-layer`` (PyTorch) times each convolution of the network alone instead, forward and backward, in the
layout the Trainer uses (``--layout`` for the other): which layer is far from the peak.

The convolutions' multiply-adds are exact (``nin_common.arch.costs``), so each convolution operator's time gives its
achieved GFLOP/s against this CPU's nominal float32 peak: where the step's time goes, and which operator keeps a
backend under the peak.  Time only on a quiet machine (the load is recorded).

    python -m benchmarks.profile_step --backend tf --batch-size 128
    TF_ENABLE_ONEDNN_OPTS=0 python -m benchmarks.profile_step --backend tf --graph xla --batch-size 32
    python -m benchmarks.profile_step --backend torch --batch-size 32

One JSON line per profile is appended to ``benchmarks/results/profile.jsonl``.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import glob
import json
import os
import tempfile
import time

import numpy as np

from nin_common.arch.costs import ops
from nin_common.arch.variants import build_spec
from nin_common.util.machine import (describe, git_commit, load_average, nominal_fp32_peak,
                                 thread_defaults, vector_flags)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RESULTS = os.path.join(HERE, "results", "profile.jsonl")
# operator types that compute the convolutions, per backend: (forward, backward)
CONV_OPS = {"tf": (("Conv2D", "_FusedConv2D"), ("Conv2DBackpropInput", "Conv2DBackpropFilter")),
            "torch": (("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution"),
                      ("aten::convolution_backward",))}


def _torch_profile(step, steps: int) -> dict:
    import torch
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}


def _tf_profile(step, steps: int) -> dict:
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            step()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))[-1], "rb") as f:
            space.ParseFromString(f.read())
    seconds = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's threads: one event per op it runs
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:  # "layer/op:OpType" (not "Class::method" trace events)
                    seconds[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    return dict(seconds)


def xla_train_step(trainer, image_size: int):
    """The TensorFlow Trainer's training step (SGD on the mean cross-entropy, dropout on) as one XLA-compiled
    ``tf.function`` (``jit_compile``), built from the Trainer's public parts: its model, optimizer and input
    pipeline (``Trainer.inputs``); ``step(images_u8, labels)`` runs it and waits for its loss."""
    import keras
    import tensorflow as tf

    @tf.function(reduce_retracing=True, jit_compile=True)
    def graph(images_u8, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(trainer.model(trainer.inputs(images_u8, image_size), training=True), tf.float32)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        grads = tape.gradient(loss, trainer.model.trainable_variables)
        trainer.optimizer.apply_gradients(zip(grads, trainer.model.trainable_variables))
        return loss

    def step(images_u8, labels):
        with tf.device(trainer.device):
            return float(graph(tf.constant(np.asarray(images_u8, np.uint8)), tf.constant(np.asarray(labels, np.int64))))
    return step


def per_layer(args) -> dict:
    """Each convolution of the chapter's network alone, forward and backward, at its size in the network."""
    import torch
    from nin_torch.training import memory_format
    fmt = {"nchw": torch.contiguous_format, "channels-last": torch.channels_last}.get(args.layout) or \
        memory_format("cpu", "fp32")
    torch.manual_seed(0)
    spec = build_spec("chapter")
    convs = [c for layer in spec.layers for c in getattr(layer, "convs", ())]
    layers = []
    for i, (op, c) in enumerate(zip([o for o in ops(spec, args.image_size) if o.macs], convs)):
        (cin, h, _), (cout, ho, _) = op.in_shape, op.out_shape
        conv = torch.nn.Conv2d(cin, cout, c.kernel_size, c.stride, c.padding).to(memory_format=fmt)
        x = torch.randn(args.batch_size, cin, h, h).contiguous(memory_format=fmt).requires_grad_(i > 0)

        def step():
            y = conv(x)
            y.backward(torch.ones_like(y))
        for _ in range(args.warmup):
            step()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        seconds = (time.perf_counter() - start) / args.steps
        macs = op.macs * args.batch_size * (3 if i else 2)  # forward, weight and (but for the first) input gradients
        layers.append(dict(conv=i, shape=f"{cin}->{cout}, {c.kernel_size}x{c.kernel_size}/{c.stride}, {h}->{ho} px",
                           ms=round(seconds * 1e3, 2),
                           gflops=round(2 * macs / seconds / 1e9, 1)))
    return dict(layout="channels-last" if fmt == torch.channels_last else "nchw", layers=layers)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="tf", choices=sorted(CONV_OPS))
    p.add_argument("--graph", default="default", choices=("default", "xla"), help="TensorFlow: the step's graph")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=67)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--per-layer", action="store_true", help="PyTorch: each convolution alone, forward and backward")
    p.add_argument("--layout", choices=("nchw", "channels-last"), help="--per-layer: another layout than the "
                                                                        "Trainer's")
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args(argv)
    thread_defaults()  # before the first framework import
    from nin_common.engine import registry
    from nin_common.engine.training import make_trainer
    load_before = load_average()
    if args.per_layer:
        if args.backend != "torch":
            p.error(f"expected --per-layer with --backend torch, got --backend {args.backend}")
        result = per_layer(args)
        total = sum(layer["ms"] for layer in result["layers"])
        row = dict(backend=args.backend, kind="per-layer", batch_size=args.batch_size, image_size=args.image_size,
                   steps=args.steps, **result, total_ms=round(total, 2), load_before=load_before,
                   load_after=load_average(), peak_gflops=(nominal_fp32_peak() or {}).get("gflops"),
                   machine=describe(), vector_flags=vector_flags(), commit=git_commit(ROOT),
                   date=datetime.datetime.now().isoformat(timespec="seconds"))
        print(f"{args.backend}, {result['layout']}, batch {args.batch_size}, {args.image_size} px, each convolution "
              f"forward and backward; load {load_before} before")
        for layer in result["layers"]:
            print(f"  conv {layer['conv']:>2} {layer['shape']:<32} {layer['ms']:8.2f} ms  "
                  f"{layer['gflops']:6.1f} GFLOP/s")
        print(f"  all: {total:.1f} ms = {args.batch_size / total * 1e3:.0f} images/s")
        with open(args.results, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        return 0
    model = registry.part(args.backend, "training").build_model("cpu", lr=0.05, variant="chapter", seed=0,
                                                                 init="kaiming-alive", image_size=args.image_size)
    trainer = make_trainer(args.backend, model, 0.05, "cpu", "fp32")
    graph = args.graph if args.backend == "tf" else None
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.batch_size, 28, 28), dtype=np.uint8)
    y = np.arange(args.batch_size) % 10
    if graph == "xla":  # the same step, XLA-compiled
        xla = xla_train_step(trainer, args.image_size)
        step = lambda: xla(x, y)  # noqa: E731
    else:
        step = lambda: trainer.train_step(x, y, args.image_size)  # noqa: E731
    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    wall = time.perf_counter() - start  # unprofiled: the step's real time
    per_op = (_torch_profile if args.backend == "torch" else _tf_profile)(step, args.steps)
    total = sum(per_op.values())
    fwd_macs = sum(op.macs for op in ops(build_spec("chapter"), args.image_size)) * args.batch_size * args.steps
    # backward: the gradients of the input and of the weights of each convolution (the first has no input one)
    first = next(op.macs for op in ops(build_spec("chapter"), args.image_size) if op.macs)
    bwd_macs = (2 * fwd_macs - first * args.batch_size * args.steps)
    peak = (nominal_fp32_peak() or {}).get("gflops")
    fwd_names, bwd_names = CONV_OPS[args.backend]
    conv = {}
    for what, names, macs in (("forward", fwd_names, fwd_macs), ("backward", bwd_names, bwd_macs)):
        secs = sum(per_op.get(n, 0.0) for n in names)
        if secs:
            conv[what] = dict(ops=[n for n in names if n in per_op], seconds=round(secs, 4),
                              gflops=round(2 * macs / secs / 1e9, 1),
                              fraction_of_peak=round(2 * macs / secs / 1e9 / peak, 3) if peak else None)
    top = sorted(per_op.items(), key=lambda kv: -kv[1])[:args.top]
    images_per_s = args.batch_size * args.steps / wall
    step_gflops = 2 * 3 * fwd_macs / 1e9 / wall  # the step: forward + backward, 3 x the forward multiply-adds
    row = dict(backend=args.backend, graph=graph, batch_size=args.batch_size, image_size=args.image_size,
               tf_enable_onednn_opts=os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
               steps=args.steps, images_per_s=round(images_per_s, 1), step_gflops=round(step_gflops, 1),
               fraction_of_peak=round(step_gflops / peak, 3) if peak else None, peak_gflops=peak,
               profiled_seconds=round(total, 4), top=[dict(op=k, seconds=round(v, 4), share=round(v / total, 4))
                                                      for k, v in top],
               conv=conv, load_before=load_before, load_after=load_average(), machine=describe(),
               vector_flags=vector_flags(), commit=git_commit(ROOT),
               date=datetime.datetime.now().isoformat(timespec="seconds"))
    print(f"{args.backend}{f' ({graph})' if graph else ''}, batch {args.batch_size}, {args.image_size} px: "
          f"{images_per_s:.0f} images/s unprofiled = {step_gflops:.0f} GFLOP/s"
          + (f" = {step_gflops / peak:.2f} of the {peak:.0f} GFLOP/s peak" if peak else "")
          + f"; load {load_before} before")
    for item in row["top"]:
        print(f"  {item['op']:<40} {item['seconds']:8.3f} s  {100 * item['share']:5.1f} %")
    for what, c in conv.items():
        print(f"  convolutions, {what}: {c['seconds']:.3f} s = {c['gflops']} GFLOP/s"
              + (f" = {c['fraction_of_peak']:.2f} of peak" if peak else ""))
    with open(args.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
