"""TensorFlow's side of the parity checks (``nin_common.tools.parity``): layer outputs, loss and gradients, SGD steps."""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
from tensorflow import keras

from nin_common.arch import checks

from . import runtime
from .model import DATA_FORMAT, NiN, export_weights, import_weights, to_canonical, variables


def parity_mode() -> None:
    """Full float32 on a GPU: no TF32 in matrix products or convolutions."""
    runtime.full_float32()


def as_float64(model: NiN) -> NiN:
    """A float64 copy of a float32 model, with the same weights (``model`` itself is left as it is).

    Keras layers take their dtype from the global dtype policy when created: it is float64 while
    the copy is built, and restored after.
    """
    with runtime.dtype_policy("float64"):
        double = NiN(**model.config.kwargs)
    import_weights(double, export_weights(model))
    return double


def _dtype(model: NiN) -> np.dtype:
    return np.dtype(variables(model)[0][2].dtype)


def parameters(model: NiN) -> Dict[str, np.ndarray]:
    """Every parameter under its canonical name and layout, at the model's precision (``export_weights``: float32)."""
    return {f"{prefix}.{kind}": to_canonical(model, prefix, kind, var.numpy())
            for prefix, kind, var in variables(model)}


def layer_outputs(model: NiN, x) -> List[np.ndarray]:
    """The output of every top-level layer (NHWC where spatial; (N, C) after global pooling), training=False."""
    x = checks.check_input_array(model.spec, x, DATA_FORMAT, model.image_size)
    X, outs = tf.convert_to_tensor(x), []
    for layer in model.net.layers:
        X = layer(X, training=False)
        outs.append(X.numpy())
    return outs


def _backward(model: NiN, x, y):
    """Mean softmax cross-entropy with dropout disabled: (loss, variables, native gradients)."""
    x, y = checks.check_batch(model.spec, x, y, DATA_FORMAT, model.image_size, _dtype(model))
    params = variables(model)
    with tf.GradientTape() as tape:
        logits = model(tf.convert_to_tensor(x), training=False)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    return float(loss), params, tape.gradient(loss, [var for _, _, var in params])


def loss_and_grads(model: NiN, x, y) -> Tuple[float, Dict[str, np.ndarray]]:
    """The loss and every parameter's gradient under its canonical name (OIHW, (out, in)), at the model's precision."""
    loss, params, grads = _backward(model, x, y)
    return loss, {f"{prefix}.{kind}": to_canonical(model, prefix, kind, grad.numpy())
                  for (prefix, kind, _), grad in zip(params, grads)}


def sgd_step(model: NiN, x, y, lr: float) -> float:
    """One step of plain SGD (``keras.optimizers.SGD``, no momentum or decay); returns the loss before it."""
    loss, params, grads = _backward(model, x, y)
    keras.optimizers.SGD(learning_rate=lr).apply_gradients(zip(grads, [var for _, _, var in params]))
    return loss
