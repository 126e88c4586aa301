"""NiN in PyTorch, built by walking the spec in ``common``."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from nin_common.arch import checks, shapes
from nin_common.arch import spec as S
from nin_common.arch.config import configure
from nin_common.arch.weights import canonical_layers, check_weights

BACKEND = "torch"
DATA_FORMAT = "NCHW"


def build_block(block: S.Block, in_channels: Optional[int] = None) -> nn.Sequential:
    """A NiN block: each convolution followed by a ReLU (lazy in-channels when unknown, as in the chapter)."""
    layers: List[nn.Module] = []
    for conv in block.convs:
        args = (conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
        layers += [nn.Conv2d(in_channels, *args) if in_channels else nn.LazyConv2d(*args), nn.ReLU()]
        in_channels = conv.out_channels if in_channels else None
    return nn.Sequential(*layers)


def nin_block(out_channels: int, kernel_size: int, strides: int, padding: int, *,
              in_channels: Optional[int] = None, num_1x1: int = 2, inner_kernel_size: int = 1) -> nn.Sequential:
    """The chapter's ``nin_block``; pass ``in_channels`` for eagerly created parameters."""
    return build_block(S.nin_stage(out_channels, kernel_size, strides, padding, num_1x1, inner_kernel_size),
                       in_channels)


def build_net(spec: S.NetSpec, image_size: int) -> nn.Sequential:
    feats = shapes.feature_shapes(spec, image_size)
    inputs = [(spec.in_channels, image_size, image_size)] + feats[:-1]
    layers: List[nn.Module] = []
    for layer, feat_in in zip(spec.layers, inputs):
        if isinstance(layer, S.Block):
            layers.append(build_block(layer, feat_in[0]))
        elif isinstance(layer, S.MaxPool):
            layers.append(nn.MaxPool2d(layer.size, layer.stride, ceil_mode=layer.ceil_mode))
        elif isinstance(layer, S.AvgPool):
            layers.append(nn.AvgPool2d(layer.size, layer.stride, ceil_mode=layer.ceil_mode))
        elif isinstance(layer, S.Dropout):
            layers.append(nn.Dropout(layer.rate))
        elif isinstance(layer, S.GlobalAvgPool):
            layers.append(nn.AdaptiveAvgPool2d((1, 1)))
        elif isinstance(layer, S.Flatten):
            layers.append(nn.Flatten())
        elif isinstance(layer, S.Dense):
            layers.append(nn.Linear(int(np.prod(feat_in)), layer.out_features))
        else:  # pragma: no cover
            raise TypeError(f"unknown layer {layer!r}")
    return nn.Sequential(*layers)


class NiN(nn.Module):
    """Network in Network (D2L 8.3).  ``self.net`` holds the top-level layers in the chapter's order.

    Parameters exist and are initialised on construction: drawn by ``common`` with NumPy from
    ``seed`` (``init="xavier"`` as in the chapter, or ``"kaiming"``), so the same seed gives
    bit-identical weights in every backend.  ``weights="quick"`` starts from trained weights shipped with
    the package (``nin_common.arch.pretrained``); the image size and init then follow from them.
    """

    def __init__(self, lr: float = 0.1, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
                 variant: Optional[str] = None, seed: Optional[int] = None, init: Optional[str] = None,
                 image_size: Optional[int] = None, weights: Optional[str] = None):
        super().__init__()
        config = configure(self, lr, num_classes, in_channels, variant, seed, init, image_size, weights)
        self.net = build_net(config.spec, config.image_size)
        import_weights(self, config.initial_weights())

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        checks.check_input_shape(self.spec, X.shape, DATA_FORMAT, self.image_size)
        return self.net(X)


def parametrized_layers(model: NiN) -> List[Tuple[str, nn.Module]]:
    """(canonical prefix, native layer) of every layer with parameters, in network order."""
    return canonical_layers(model.spec, model.net, lambda blk: [m for m in blk if isinstance(m, nn.Conv2d)])


def export_weights(model: NiN) -> Dict[str, np.ndarray]:
    """Canonical weights: conv OIHW, dense (out, in), float32 NumPy."""
    out = {}
    for prefix, layer in parametrized_layers(model):
        out[f"{prefix}.weight"] = layer.weight.detach().cpu().numpy().astype(np.float32)
        out[f"{prefix}.bias"] = layer.bias.detach().cpu().numpy().astype(np.float32)
    return out


def import_weights(model: NiN, weights) -> None:
    """Load canonical weights; every name and shape is checked before the model is touched."""
    weights = check_weights(model.spec, weights, model.image_size)
    with torch.no_grad():
        for prefix, layer in parametrized_layers(model):
            layer.weight.copy_(torch.from_numpy(weights[f"{prefix}.weight"]))
            layer.bias.copy_(torch.from_numpy(weights[f"{prefix}.bias"]))


def device_of(model: NiN) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def eval_mode(model: NiN):
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def layer_shapes(model: NiN, input_shape) -> List[Tuple[str, Tuple[int, ...]]]:
    """(layer class name, output shape) of each top-level layer, measured by running the layers."""
    checks.check_input_shape(model.spec, input_shape, DATA_FORMAT, model.image_size)
    X = torch.zeros(tuple(input_shape), device=device_of(model))
    out = []
    with eval_mode(model):
        for layer in model.net:
            X = layer(X)
            out.append((type(layer).__name__, tuple(X.shape)))
    return out


def predict(model: NiN, x) -> np.ndarray:
    """Logits (N, num_classes) as NumPy, in evaluation mode; ``x`` is an NCHW NumPy batch."""
    x = checks.check_input_array(model.spec, x, DATA_FORMAT, model.image_size)
    with eval_mode(model):
        return model(torch.from_numpy(x).to(device_of(model))).float().cpu().numpy()


def num_params(model: NiN) -> int:
    return sum(p.numel() for p in model.parameters())
