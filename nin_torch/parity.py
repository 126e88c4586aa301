"""PyTorch's side of the parity checks (``nin_common.tools.parity``): layer outputs, loss and gradients, SGD steps."""
from __future__ import annotations

import copy
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from nin_common.arch import checks

from . import runtime
from .model import DATA_FORMAT, NiN, device_of, eval_mode, parametrized_layers


def parity_mode() -> None:
    """Full float32 on a GPU: no TF32 in matrix products (cuBLAS) or convolutions (cuDNN)."""
    runtime.full_float32()


def as_float64(model: NiN) -> NiN:
    """A float64 copy of a float32 model, with the same weights (``model`` itself is left as it is)."""
    return copy.deepcopy(model).double()


def _dtype(model: NiN) -> np.dtype:
    return np.dtype(str(next(model.parameters()).dtype).removeprefix("torch."))


def _canonical(model: NiN, read: Callable[[torch.nn.Parameter], torch.Tensor]) -> Dict[str, np.ndarray]:
    """Copies (not views: training must not change them afterwards) under canonical names."""
    return {f"{prefix}.{kind}": read(getattr(layer, kind)).cpu().numpy().copy()
            for prefix, layer in parametrized_layers(model) for kind in ("weight", "bias")}


def parameters(model: NiN) -> Dict[str, np.ndarray]:
    """Every parameter under its canonical name and layout, at the model's precision (``export_weights``: float32)."""
    return _canonical(model, lambda p: p.detach())


def layer_outputs(model: NiN, x) -> List[np.ndarray]:
    """The output of every top-level layer (NCHW where spatial), in evaluation mode."""
    x = checks.check_input_array(model.spec, x, DATA_FORMAT, model.image_size)
    X, outs = torch.from_numpy(x).to(device_of(model)), []
    with eval_mode(model):
        for layer in model.net:
            X = layer(X)
            outs.append(X.cpu().numpy())
    return outs


def _backward(model: NiN, x, y) -> float:
    """Mean softmax cross-entropy with dropout disabled; leaves the gradients in ``.grad``."""
    x, y = checks.check_batch(model.spec, x, y, DATA_FORMAT, model.image_size, _dtype(model))
    device, was_training = device_of(model), model.training
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(torch.from_numpy(x).to(device)), torch.from_numpy(y).to(device))
        loss.backward()
    finally:
        model.train(was_training)
    return float(loss.detach())


def loss_and_grads(model: NiN, x, y) -> Tuple[float, Dict[str, np.ndarray]]:
    """The loss and every parameter's gradient under its canonical name (OIHW, (out, in)), at the model's precision."""
    return _backward(model, x, y), _canonical(model, lambda p: p.grad)


def sgd_step(model: NiN, x, y, lr: float) -> float:
    """One step of plain SGD (``torch.optim.SGD``, no momentum or decay); returns the loss before it."""
    loss = _backward(model, x, y)
    torch.optim.SGD(model.parameters(), lr=lr).step()
    return loss
