"""Measured memory of a NiN in TensorFlow, to check ``nin_common.arch.costs`` against.

TensorFlow's CPU allocator keeps no statistics (its BFC allocator, ``TF_CPU_ALLOCATOR_USE_BFC=
true``, does, but counts whole reused chunks, which made its figures wander by 15 % between
runs).  So this measures the process's resident memory, which Linux reports in
/proc/self/status, with its peak restarted through /proc/self/clear_refs; glibc must be told
to map every block of 64 KiB or more on its own (``MALLOC_MMAP_THRESHOLD_=65536`` in the
environment when Python starts, ``MEASURE_ENV`` below), so that a freed tensor
leaves at once.  ``nin resources --measure`` starts such a process, with oneDNN off
(``TF_ENABLE_ONEDNN_OPTS=0``: oneDNN's allocator keeps its pages resident, so the peak missed the activations
with it).  What is measured is TensorFlow's own kernels'
memory, the same on every x86 CPU.
"""
from __future__ import annotations


import numpy as np
import tensorflow as tf
from tensorflow import keras

from nin_common.arch.costs import BYTES, Execution, check_options
from nin_common.arch.shapes import batch_shape
from nin_common.engine.measure import (RSS_ENV, RSS_HOW, Measured, check_rss_environment, rss_allocation,
                                  run_measurement)
from .model import DATA_FORMAT, NiN

# Keras adds a convolution's bias as a separate operation, and a Sequential runs as a functional
# graph that keeps every layer's output until the call returns.
EXECUTION = Execution(conv_outputs=2, holds_inputs=True, keeps_outputs=True)
HOW = RSS_HOW
# oneDNN off, in the measuring process only (importing nin_tf switches it on for training, nin_tf.runtime): its
# oneDNN path allocates from a pool that keeps pages resident, so the resident-memory peak misses most
# activations with it and matches without; without it every x86 CPU runs the same kernels and allocator
# (docs/exercises.md, exercise 4).
MEASURE_ENV = dict(RSS_ENV, TF_ENABLE_ONEDNN_OPTS="0")


def check_environment() -> None:
    """Raise RuntimeError unless this process can measure its memory as the module docstring says."""
    check_rss_environment("TensorFlow")


def make_optimizer(model: NiN, optimizer: str) -> keras.optimizers.Optimizer:
    if optimizer == "adam":
        return keras.optimizers.Adam(model.lr)
    return keras.optimizers.SGD(model.lr, momentum=0.9 if optimizer == "momentum" else 0.0)


def measured_memory(model: NiN, batch_size: int, image_size: int, optimizer: str = "sgd") -> Measured:
    """Memory of a training step (cross-entropy, ``optimizer``) and a prediction, measured (see Measured).

    Everything runs eagerly, operation by operation, as in the other backends.
    """
    check_options(batch_size, optimizer)
    check_environment()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random(batch_shape(DATA_FORMAT, batch_size, model.in_channels, image_size),
                               dtype=np.float32))
    y = tf.constant(rng.integers(0, model.num_classes, batch_size))
    opt = make_optimizer(model, optimizer)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def begin_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape, loss

    def end_step(pending):
        tape, loss = pending
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))

    with tf.device("/CPU:0"):  # this measures CPU memory
        return run_measurement("tf", rss_allocation, begin_step, end_step, lambda: model(x, training=False),
                               lambda: sum(v.numpy().nbytes for v in opt.variables if len(v.shape) > 0),
                               params=sum(int(np.prod(v.shape)) for v in model.trainable_variables) * BYTES,
                               input_bytes=int(np.prod(x.shape)) * BYTES, grads_kept=False, how=HOW)
