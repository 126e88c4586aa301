"""Measured memory of a NiN in TensorFlow, to check ``common.resources`` against.

The numbers come from TensorFlow's own allocator statistics (``tf.config.experimental.
get_memory_info``).  On the CPU TensorFlow keeps them only with its BFC allocator, which it
uses when ``TF_CPU_ALLOCATOR_USE_BFC=true`` is set before TensorFlow allocates anything
(``common.resources.MEASURE_ENV``): ``nin resources --measure`` runs the measurement in a
process started so.  The BFC allocator hands out whole chunks, so its figures can exceed the
tensors' bytes a little.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import tensorflow as tf
from tensorflow import keras

from common.resources import BYTES, MEASURE_ENV, Execution, Measured, batch_shape, check_options, run_measurement
from .model import DATA_FORMAT, NiN

# Keras adds a convolution's bias as a separate operation, and a Sequential runs as a functional
# graph that keeps every layer's output until the call returns.
EXECUTION = Execution(conv_outputs=2, keeps_outputs=True)
DEVICE = "CPU:0"
HOW = "tf.config.experimental.get_memory_info (current, peak), BFC allocator"


def _stats() -> dict:
    try:
        return tf.config.experimental.get_memory_info(DEVICE)
    except ValueError as err:
        setting = " ".join(f"{k}={v}" for k, v in MEASURE_ENV["tf"].items())
        raise RuntimeError(f"TensorFlow keeps no allocator statistics in this process ({err}); start it with "
                           f"{setting} in the environment") from err


def allocation(fn) -> Tuple[int, int]:
    """(peak, level at the end) of TensorFlow's allocator while ``fn()`` runs, above its level at the start."""
    start = _stats()["current"]
    tf.config.experimental.reset_memory_stats(DEVICE)
    fn()
    stats = _stats()
    return max(0, stats["peak"] - start), stats["current"] - start


def make_optimizer(model: NiN, optimizer: str) -> keras.optimizers.Optimizer:
    if optimizer == "adam":
        return keras.optimizers.Adam(model.lr)
    return keras.optimizers.SGD(model.lr, momentum=0.9 if optimizer == "momentum" else 0.0)


def measured_memory(model: NiN, batch_size: int, image_size: int, optimizer: str = "sgd") -> Measured:
    """Memory of a training step (cross-entropy, ``optimizer``) and a prediction, measured (see Measured).

    Everything runs eagerly, operation by operation, as in the other backends.
    """
    check_options(batch_size, optimizer)
    _stats()
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

    return run_measurement("tf", allocation, begin_step, end_step, lambda: model(x, training=False),
                           lambda: sum(v.numpy().nbytes for v in opt.variables if len(v.shape) > 0),
                           params=sum(int(np.prod(v.shape)) for v in model.trainable_variables) * BYTES,
                           input_bytes=int(np.prod(x.shape)) * BYTES, grads_kept=False, how=HOW)
