"""NiN in MXNet Gluon, built by walking the spec in ``common``."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from .runtime import array, mx
from mxnet.gluon import nn

from nin_common.arch import checks, shapes
from nin_common.arch import spec as S
from nin_common.arch.config import configure
from nin_common.arch.weights import canonical_layers, check_weights

BACKEND = "mxnet"
DATA_FORMAT = "NCHW"


def build_block(block: S.Block, in_channels: Optional[int] = None) -> nn.HybridSequential:
    """A NiN block: convolutions with ReLU (``in_channels=None`` defers shapes, as in the chapter)."""
    blk = nn.HybridSequential()
    for conv in block.convs:
        blk.add(nn.Conv2D(conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          activation="relu", in_channels=in_channels or 0))
        in_channels = conv.out_channels if in_channels else None
    return blk


def nin_block(out_channels: int, kernel_size: int, strides: int, padding: int, *,
              in_channels: Optional[int] = None, num_1x1: int = 2, inner_kernel_size: int = 1) -> nn.HybridSequential:
    """The chapter's ``nin_block``; pass ``in_channels`` for parameters with known shapes."""
    return build_block(S.nin_stage(out_channels, kernel_size, strides, padding, num_1x1, inner_kernel_size),
                       in_channels)


def build_net(spec: S.NetSpec, image_size: int) -> nn.HybridSequential:
    feats = shapes.feature_shapes(spec, image_size)
    inputs = [(spec.in_channels, image_size, image_size)] + feats[:-1]
    net = nn.HybridSequential()
    for layer, feat_in in zip(spec.layers, inputs):
        if isinstance(layer, S.Block):
            net.add(build_block(layer, feat_in[0]))
        elif isinstance(layer, S.MaxPool):
            net.add(nn.MaxPool2D(pool_size=layer.size, strides=layer.stride, ceil_mode=layer.ceil_mode))
        elif isinstance(layer, S.AvgPool):
            net.add(nn.AvgPool2D(pool_size=layer.size, strides=layer.stride, ceil_mode=layer.ceil_mode))
        elif isinstance(layer, S.Dropout):
            net.add(nn.Dropout(layer.rate))
        elif isinstance(layer, S.GlobalAvgPool):
            net.add(nn.GlobalAvgPool2D())
        elif isinstance(layer, S.Flatten):
            net.add(nn.Flatten())
        elif isinstance(layer, S.Dense):
            net.add(nn.Dense(layer.out_features, in_units=int(np.prod(feat_in))))
        else:  # pragma: no cover
            raise TypeError(f"unknown layer {layer!r}")
    return net


class NiN(nn.HybridBlock):
    """Network in Network (D2L 8.3).  ``self.net`` holds the top-level layers in the chapter's order.

    Parameters exist and are initialised on construction: drawn by ``common`` with NumPy from
    ``seed`` (``init="xavier"`` as in the chapter, or ``"kaiming"``), so the same seed gives
    bit-identical weights in every backend.  ``weights="quick"`` starts from trained weights shipped with
    the package (``nin_common.arch.pretrained``); the image size and init then follow from them.  Call ``hybridize()`` for speed.
    """

    def __init__(self, lr: float = 0.1, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
                 variant: Optional[str] = None, seed: Optional[int] = None, init: Optional[str] = None,
                 image_size: Optional[int] = None, weights: Optional[str] = None, ctx=None):
        super().__init__()
        config = configure(self, lr, num_classes, in_channels, variant, seed, init, image_size, weights)
        with self.name_scope():
            self.net = build_net(config.spec, config.image_size)
        self.net.initialize(mx.init.Zero(), ctx=ctx or mx.cpu())
        import_weights(self, config.initial_weights())

    def forward(self, X, *args):
        """The shape is checked here, where ``X`` is an array even when the network is hybridized."""
        checks.check_input_shape(self.spec, X.shape, DATA_FORMAT, self.image_size)
        return super().forward(X, *args)

    def hybrid_forward(self, F, X):
        return self.net(X)


def parametrized_layers(model: NiN) -> List[Tuple[str, nn.HybridBlock]]:
    """(canonical prefix, native layer) of every layer with parameters, in network order."""
    return canonical_layers(model.spec, model.net, lambda blk: [m for m in blk if isinstance(m, nn.Conv2D)])


def export_weights(model: NiN) -> Dict[str, np.ndarray]:
    """Canonical weights: conv OIHW, dense (out, in), float32 NumPy."""
    out = {}
    for prefix, layer in parametrized_layers(model):
        out[f"{prefix}.weight"] = layer.weight.data().asnumpy().astype(np.float32)
        out[f"{prefix}.bias"] = layer.bias.data().asnumpy().astype(np.float32)
    return out


def import_weights(model: NiN, weights) -> None:
    """Load canonical weights; every name and shape is checked before the model is touched."""
    weights = check_weights(model.spec, weights, model.image_size)
    for prefix, layer in parametrized_layers(model):
        for kind in ("weight", "bias"):
            param = getattr(layer, kind)
            param.set_data(array(weights[f"{prefix}.{kind}"], param.list_ctx()[0]))


def context_of(model: NiN):
    return next(iter(model.collect_params().values())).list_ctx()[0]


def layer_shapes(model: NiN, input_shape) -> List[Tuple[str, Tuple[int, ...]]]:
    """(layer class name, output shape) of each top-level layer, measured by running the layers."""
    checks.check_input_shape(model.spec, input_shape, DATA_FORMAT, model.image_size)
    X = array(np.zeros(tuple(input_shape), np.float32), context_of(model))
    out = []
    for layer in model.net:  # outside autograd.record: prediction mode, dropout off
        X = layer(X)
        out.append((type(layer).__name__, tuple(X.shape)))
    return out


def predict(model: NiN, x) -> np.ndarray:
    """Logits (N, num_classes) as NumPy, in evaluation mode; ``x`` is an NCHW NumPy batch."""
    x = checks.check_input_array(model.spec, x, DATA_FORMAT, model.image_size)
    return model(array(x, context_of(model))).asnumpy().astype(np.float32)


def num_params(model: NiN) -> int:
    return int(sum(np.prod(p.shape) for p in model.collect_params().values()))
