"""Measured memory of a NiN in JAX, to check ``nin_common.tools.resources`` against.

XLA's CPU client keeps no allocation statistics (``Device.memory_stats()`` is None on the CPU), so this
measures the process's resident memory, as the TensorFlow backend does (``nin_common.engine.measure.
rss_allocation``: glibc must map every block of 64 KiB or more on its own, ``RSS_ENV``, set when
``nin resources --measure`` starts the measuring process).

The training forward pass is ``jax.vjp`` of the ``jax.jit``-compiled loss: JAX splits it into a compiled
forward pass returning the residuals (what the backward pass needs: the tensors the analytic figures count)
and a compiled backward pass.  (Run eagerly, operation by operation, ``jax.vjp`` keeps every primitive's
residuals separately, among them each ReLU's float mask and each convolution's output before the bias,
about twice the analytic figure.)  The prediction runs eagerly, as in the other backends, with JAX's CPU
client dispatching synchronously (``runtime.SYNC_DISPATCH_ENV``, in ``MEASURE_ENV``): asynchronously, how
many queued operations hold their tensors at once depends on the machine's load, and so did the peak.
"""
from __future__ import annotations

import jax
import numpy as np
import optax
from flax import nnx

from nin_common.arch.costs import BYTES, Execution, check_options
from nin_common.arch.shapes import batch_shape
from nin_common.engine.measure import (RSS_ENV, RSS_HOW, Measured, check_rss_environment, rss_allocation,
                                  run_measurement)
from .model import DATA_FORMAT, NiN, device_of
from .runtime import SYNC_DISPATCH_ENV, sync_dispatch

# An NNX convolution adds its bias as a separate operation; a block (``Sequential``) holds its input in the
# caller's loop until it returns.
EXECUTION = Execution(conv_outputs=2, holds_inputs=True)
HOW = RSS_HOW
MEASURE_ENV = dict(RSS_ENV, **{SYNC_DISPATCH_ENV: "1"})


def make_optimizer(optimizer: str, lr: float) -> optax.GradientTransformation:
    if optimizer == "adam":
        return optax.adam(lr)
    return optax.sgd(lr, momentum=0.9 if optimizer == "momentum" else None)


def measured_memory(model: NiN, batch_size: int, image_size: int, optimizer: str = "sgd") -> Measured:
    """Memory of a training step (cross-entropy, ``optimizer``) and a prediction, measured (see Measured)."""
    check_options(batch_size, optimizer)
    check_rss_environment("JAX")
    if not sync_dispatch():
        raise RuntimeError(f"measuring JAX's memory needs a Python started with {SYNC_DISPATCH_ENV}=1 in the "
                           f"environment (nin resources --measure does that)")
    if device_of(model).platform != "cpu":
        raise ValueError(f"expected a model on the CPU (this measures CPU memory), got one on {device_of(model)}")
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.random(batch_shape(DATA_FORMAT, batch_size, model.in_channels, image_size),
                                  dtype=np.float32))
    y = jax.device_put(rng.integers(0, model.num_classes, batch_size).astype(np.int32))
    graphdef, params = nnx.split(model, nnx.Param)
    opt = make_optimizer(optimizer, model.lr)
    state = [opt.init(params)]
    key = jax.random.key(0)

    def loss_fn(p):
        logits = nnx.merge(graphdef, p)(x, key)  # dropout active
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    forward = jax.jit(loss_fn)  # linearized, it runs compiled and keeps only the residuals its gradient needs

    def begin_step():
        loss, backward = jax.vjp(forward, nnx.state(model, nnx.Param))
        return loss.block_until_ready(), backward

    def end_step(pending):
        loss, backward = pending
        current = nnx.state(model, nnx.Param)
        (grads,) = backward(jax.numpy.ones_like(loss))
        updates, state[0] = opt.update(grads, state[0], current)
        nnx.update(model, jax.block_until_ready(optax.apply_updates(current, updates)))

    def predict():
        model(x).block_until_ready()

    def state_bytes() -> int:
        return sum(leaf.nbytes for leaf in jax.tree.leaves(state[0]) if leaf.ndim > 0)

    return run_measurement("jax", rss_allocation, begin_step, end_step, predict, state_bytes,
                           params=sum(leaf.size for leaf in jax.tree.leaves(params)) * BYTES,
                           input_bytes=x.size * BYTES, grads_kept=False, how=HOW)
