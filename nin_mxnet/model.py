"""NiN in MXNet Gluon: the chapter's ``nin_block`` and ``NiN``, built from the spec in ``common``."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .runtime import array, mx
from mxnet.gluon import nn

from nin_common.arch import checks
from nin_common.arch import spec as S
from nin_common.arch.config import model_config
from nin_common.arch.model import ConfiguredModel, ModelOps, native_layers, nin_doc

BACKEND = "mxnet"
DATA_FORMAT = "NCHW"


def nin_block(out_channels: int, kernel_size: int, strides: int, padding: int, *,
              in_channels: Optional[int] = None, num_1x1: int = 2, inner_kernel_size: int = 1) -> nn.HybridSequential:
    """The chapter's ``nin_block``; pass ``in_channels`` for parameters with known shapes."""
    return build_block(S.nin_stage(out_channels, kernel_size, strides, padding, num_1x1, inner_kernel_size),
                       in_channels)


class NiN(nn.HybridBlock, ConfiguredModel):
    __doc__ = nin_doc(notes="Call ``hybridize()`` for speed.")

    def __init__(self, lr: float = 0.1, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
                 variant: Optional[str] = None, seed: Optional[int] = None, init: Optional[str] = None,
                 image_size: Optional[int] = None, weights: Optional[str] = None, ctx=None):
        super().__init__()
        self.config = model_config(lr, num_classes, in_channels, variant, seed, init, image_size, weights)
        with self.name_scope():
            self.net = nn.HybridSequential()
            self.net.add(*native_layers(LAYERS, self.spec, self.image_size))
        self.net.initialize(mx.init.Zero(), ctx=ctx or mx.cpu())
        import_weights(self, self.config.initial_weights())

    def forward(self, X, *args):
        """The shape is checked here, where ``X`` is an array even when the network is hybridized."""
        checks.check_input_shape(self.spec, X.shape, DATA_FORMAT, self.image_size)
        return super().forward(X, *args)

    def hybrid_forward(self, F, X):
        return self.net(X)


def build_block(block: S.Block, in_channels: Optional[int] = None) -> nn.HybridSequential:
    """A NiN block: convolutions with ReLU (``in_channels=None`` defers shapes, as in the chapter)."""
    blk = nn.HybridSequential()
    for conv in block.convs:
        blk.add(nn.Conv2D(conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          activation="relu", in_channels=in_channels or 0))
        in_channels = conv.out_channels if in_channels else None
    return blk


# each spec layer as a Gluon layer, given its input's (C, H, W)
LAYERS = {
    S.Block: lambda layer, shape_in: build_block(layer, shape_in[0]),
    S.MaxPool: lambda layer, _: nn.MaxPool2D(pool_size=layer.size, strides=layer.stride, ceil_mode=layer.ceil_mode),
    S.AvgPool: lambda layer, _: nn.AvgPool2D(pool_size=layer.size, strides=layer.stride, ceil_mode=layer.ceil_mode),
    S.Dropout: lambda layer, _: nn.Dropout(layer.rate),
    S.GlobalAvgPool: lambda layer, _: nn.GlobalAvgPool2D(),
    S.Flatten: lambda layer, _: nn.Flatten(),
    S.Dense: lambda layer, shape_in: nn.Dense(layer.out_features, in_units=int(np.prod(shape_in))),
}


def context_of(model: NiN):
    return next(iter(model.collect_params().values())).list_ctx()[0]


class MXNetOps(ModelOps):
    """The hooks of ``nin_common.arch.model.ModelOps`` in Gluon; layers run outside ``autograd.record``, so in
    prediction mode (dropout off)."""

    conv_type = nn.Conv2D
    def value(self, param):
        return param.data().asnumpy()

    def assign(self, model, items):
        for _, _, param, value in items:
            param.set_data(array(value, param.list_ctx()[0]))

    def tensor(self, model, x):
        return array(x, context_of(model))

    def numpy(self, y):
        return y.asnumpy()

    def num_params(self, model):
        return int(sum(np.prod(p.shape) for p in model.collect_params().values()))


ops = MXNetOps(DATA_FORMAT)
export_weights, import_weights, layer_shapes, predict, num_params = ops.functions()
parametrized_layers = ops.parametrized_layers
