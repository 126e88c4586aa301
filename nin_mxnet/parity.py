"""MXNet's side of the parity checks (``nin_common.tools.parity``): layer outputs, loss and gradients, SGD steps."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from . import runtime
from .runtime import array
from mxnet import autograd, gluon

from nin_common.arch import checks
from nin_common.arch import spec as S

from .model import DATA_FORMAT, NiN, context_of, export_weights, import_weights, parametrized_layers


def parity_mode() -> None:
    """Full float32 on a GPU: no Tensor Core (TF32 or float16) math in cuBLAS or cuDNN (see runtime)."""
    runtime.full_float32()


def as_float64(model: NiN) -> NiN:
    """A float64 copy of a float32 model, with the same weights (``model`` itself is left as it is)."""
    double = NiN(**model.config.kwargs, ctx=context_of(model))
    double.cast("float64")
    import_weights(double, export_weights(model))
    return double


def _dtype(model: NiN) -> np.dtype:
    return np.dtype(next(iter(model.collect_params().values())).dtype)


def _canonical(model: NiN, read: Callable[[gluon.Parameter], object]) -> Dict[str, np.ndarray]:
    return {f"{prefix}.{kind}": read(getattr(layer, kind)).asnumpy()
            for prefix, layer in parametrized_layers(model) for kind in ("weight", "bias")}


def parameters(model: NiN) -> Dict[str, np.ndarray]:
    """Every parameter under its canonical name and layout, at the model's precision (``export_weights``: float32)."""
    return _canonical(model, lambda p: p.data())


def layer_outputs(model: NiN, x) -> List[np.ndarray]:
    """The output of every top-level layer (NCHW where spatial), in prediction mode."""
    x = checks.check_input_array(model.spec, x, DATA_FORMAT, model.image_size)
    X, outs = array(x, context_of(model)), []
    for layer in model.net:  # outside autograd.record: prediction mode, dropout off
        X = layer(X)
        outs.append(X.asnumpy())
    return outs


def _backward(model: NiN, x, y, total: Optional[int] = None) -> float:
    """Mean softmax cross-entropy with dropout disabled; leaves the gradients in ``param.grad()``.  ``total``: the
    summed cross-entropy over ``total`` instead of the mean (a worker's slice of a global batch of ``total``)."""
    x, y = checks.check_batch(model.spec, x, y, DATA_FORMAT, model.image_size, _dtype(model))
    ctx = context_of(model)
    # Record in training mode, stepping over the dropout layers: with train_mode=False, MXNet's
    # oneDNN max pooling keeps no argmax workspace and its backward sends every window's gradient
    # to the window's first element (seen with MXNet 1.9.1; compare apache/mxnet#10994).
    with autograd.record(train_mode=True):
        X = array(x, ctx)
        for layer, native in zip(model.spec.layers, model.net):
            X = X if isinstance(layer, S.Dropout) else native(X)
        losses = gluon.loss.SoftmaxCrossEntropyLoss()(X, array(y, ctx))
        loss = losses.mean() if total is None else losses.sum() / total
    loss.backward()
    return float(loss.item())


def loss_and_grads(model: NiN, x, y) -> Tuple[float, Dict[str, np.ndarray]]:
    """The loss and every parameter's gradient under its canonical name (OIHW, (out, in)), at the model's precision."""
    return _backward(model, x, y), _canonical(model, lambda p: p.grad())


def sgd_step(model: NiN, x, y, lr: float) -> float:
    """One step of plain SGD (Gluon's ``Trainer`` with ``'sgd'``, no momentum or decay); returns the loss before it."""
    loss = _backward(model, x, y)
    gluon.Trainer(model.collect_params(), "sgd", {"learning_rate": lr}).step(1)  # the loss is already a mean
    return loss
