"""NiN in PyTorch: the chapter's ``nin_block`` and ``NiN``, built from the spec in ``common``."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch
from torch import nn

from nin_common.arch import checks
from nin_common.arch import spec as S
from nin_common.arch.config import model_config
from nin_common.arch.model import ConfiguredModel, ModelOps, native_layers, nin_doc

BACKEND = "torch"
DATA_FORMAT = "NCHW"


def nin_block(out_channels: int, kernel_size: int, strides: int, padding: int, *,
              in_channels: Optional[int] = None, num_1x1: int = 2, inner_kernel_size: int = 1) -> nn.Sequential:
    """The chapter's ``nin_block``; pass ``in_channels`` for eagerly created parameters."""
    return build_block(S.nin_stage(out_channels, kernel_size, strides, padding, num_1x1, inner_kernel_size),
                       in_channels)


class NiN(nn.Module, ConfiguredModel):
    __doc__ = nin_doc()

    def __init__(self, lr: float = 0.1, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
                 variant: Optional[str] = None, seed: Optional[int] = None, init: Optional[str] = None,
                 image_size: Optional[int] = None, weights: Optional[str] = None):
        super().__init__()
        self.config = model_config(lr, num_classes, in_channels, variant, seed, init, image_size, weights)
        self.net = nn.Sequential(*native_layers(LAYERS, self.spec, self.image_size))
        import_weights(self, self.config.initial_weights())

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        checks.check_input_shape(self.spec, X.shape, DATA_FORMAT, self.image_size)
        return self.net(X)


def build_block(block: S.Block, in_channels: Optional[int] = None) -> nn.Sequential:
    """A NiN block: each convolution followed by a ReLU (lazy in-channels when unknown, as in the chapter)."""
    layers = []
    for conv in block.convs:
        args = (conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
        layers += [nn.Conv2d(in_channels, *args) if in_channels else nn.LazyConv2d(*args), nn.ReLU()]
        in_channels = conv.out_channels if in_channels else None
    return nn.Sequential(*layers)


# each spec layer as a torch layer, given its input's (C, H, W)
LAYERS = {
    S.Block: lambda layer, shape_in: build_block(layer, shape_in[0]),
    S.MaxPool: lambda layer, _: nn.MaxPool2d(layer.size, layer.stride, ceil_mode=layer.ceil_mode),
    S.AvgPool: lambda layer, _: nn.AvgPool2d(layer.size, layer.stride, ceil_mode=layer.ceil_mode),
    S.Dropout: lambda layer, _: nn.Dropout(layer.rate),
    S.GlobalAvgPool: lambda layer, _: nn.AdaptiveAvgPool2d((1, 1)),
    S.Flatten: lambda layer, _: nn.Flatten(),
    S.Dense: lambda layer, shape_in: nn.Linear(int(np.prod(shape_in)), layer.out_features),
}


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


class TorchOps(ModelOps):
    """The hooks of ``nin_common.arch.model.ModelOps`` in PyTorch."""

    conv_type = nn.Conv2d
    def value(self, param):
        return param.detach().cpu().numpy()

    def assign(self, model, items):
        with torch.no_grad():
            for _, _, param, value in items:
                param.copy_(torch.from_numpy(value))

    def tensor(self, model, x):
        return torch.from_numpy(x).to(device_of(model))

    def numpy(self, y):
        return y.float().cpu().numpy()

    def num_params(self, model):
        return sum(p.numel() for p in model.parameters())

    eval_mode = staticmethod(eval_mode)


ops = TorchOps(DATA_FORMAT)
export_weights, import_weights, layer_shapes, predict, num_params = ops.functions()
parametrized_layers = ops.parametrized_layers
