"""JAX's side of the parity checks (``nin_common.tools.parity``): layer outputs, loss and gradients, SGD steps.

JAX computes in float64 only while its ``jax_enable_x64`` switch is on, and that switch is global.  A float64
model's functions here (and ``import_weights``) switch it on for their own duration only
(``model.precision_of``: ``runtime.x64``), so it never leaks into other code; float32 models
run with it as it is.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, List, Tuple

import jax
import numpy as np
import optax
from flax import nnx

from nin_common.arch import checks

from . import runtime
from .model import DATA_FORMAT, NiN, device_of, dtype_of, precision_of, to_canonical, variables


def parity_mode() -> None:
    """Full float32 on a GPU: matrix products and convolutions at ``highest`` precision (no TF32)."""
    runtime.full_float32()


def as_float64(model: NiN) -> NiN:
    """A float64 copy of a float32 model, with the same weights (``model`` itself is left as it is)."""
    double = NiN(**model.config.kwargs)
    with runtime.x64():
        for (_, _, src), (_, _, dst) in zip(variables(model), variables(double)):
            dst.value = jax.device_put(np.asarray(src.value, np.float64), device_of(model))
    return double


def parameters(model: NiN) -> Dict[str, np.ndarray]:
    """Every parameter under its canonical name and layout, at the model's precision (``export_weights``: float32)."""
    return {f"{prefix}.{kind}": to_canonical(model, prefix, kind, param.value)
            for prefix, kind, param in variables(model)}


def layer_outputs(model: NiN, x) -> List[np.ndarray]:
    """The output of every top-level layer (NHWC where spatial; (N, C) after global pooling), dropout off."""
    x = checks.check_input_array(model.spec, x, DATA_FORMAT, model.image_size, dtype_of(model))
    outs = []
    with precision_of(model):
        X = jax.device_put(x, device_of(model))
        for layer in model.net.layers:
            X = layer(X)
            outs.append(np.asarray(X))
    return outs


@contextmanager
def _batch(model: NiN, x, y):
    """The checked batch on the model's device, inside the model's precision."""
    x, y = checks.check_batch(model.spec, x, y, DATA_FORMAT, model.image_size, dtype_of(model))
    with precision_of(model):
        yield jax.device_put(x, device_of(model)), jax.device_put(y, device_of(model))


def _loss_fn(graphdef, x, y):
    def loss(params):
        logits = nnx.merge(graphdef, params)(x)  # no key: dropout off
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss


def _backward(model: NiN, x, y):
    """Mean softmax cross-entropy with dropout disabled: (loss, params, native gradients), in the model's
    precision (the caller is inside ``_batch``)."""
    graphdef, params = nnx.split(model, nnx.Param)
    loss, grads = jax.value_and_grad(_loss_fn(graphdef, x, y))(params)
    return loss, params, grads


def loss_and_grads(model: NiN, x, y) -> Tuple[float, Dict[str, np.ndarray]]:
    """The loss and every parameter's gradient under its canonical name (OIHW, (out, in)), at the model's precision."""
    with _batch(model, x, y) as (xb, yb):
        loss, _, grads = _backward(model, xb, yb)
        grad_model = nnx.merge(nnx.graphdef(model), grads)  # the gradients in the model's shape, to name them
        return float(loss), {f"{prefix}.{kind}": to_canonical(model, prefix, kind, g.value)
                             for prefix, kind, g in variables(grad_model)}


def sgd_step(model: NiN, x, y, lr: float) -> float:
    """One step of plain SGD (``optax.sgd``, no momentum or decay); returns the loss before it."""
    with _batch(model, x, y) as (xb, yb):
        loss, params, grads = _backward(model, xb, yb)
        optimizer = optax.sgd(lr)
        updates, _ = optimizer.update(grads, optimizer.init(params), params)
        nnx.update(model, optax.apply_updates(params, updates))
        return float(loss)
