"""NiN in JAX with Flax NNX (NHWC): the chapter's ``nin_block`` and ``NiN``, built from the spec in ``common``."""
from __future__ import annotations

import weakref
from contextlib import nullcontext
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from . import runtime
from .layers import AvgPool2D, Conv, Dropout, Flatten, GlobalAvgPool2D, Linear, MaxPool2D, Sequential, relu, zero_init

from nin_common.arch import checks
from nin_common.arch import spec as S
from nin_common.arch.config import model_config
from nin_common.arch.model import ConfiguredModel, ModelOps, native_layers, nin_doc

BACKEND = "jax"
DATA_FORMAT = "NHWC"


def nin_block(out_channels: int, kernel_size: int, strides: int, padding: int, *, in_channels: int = 1,
              num_1x1: int = 2, inner_kernel_size: int = 1) -> Sequential:
    """The chapter's ``nin_block``.  NNX creates parameters on construction, so the input channels must be
    known: ``in_channels`` (default 1, Fashion-MNIST's gray images).  Weights start at zero."""
    return build_block(S.nin_stage(out_channels, kernel_size, strides, padding, num_1x1, inner_kernel_size),
                       in_channels)


class NiN(nnx.Module, ConfiguredModel):
    __doc__ = nin_doc("``self.net`` (iterable, and as the list ``self.net.layers``)", "Inputs are NHWC.  ``model(x, "
                      "key)`` runs dropout with the PRNG ``key`` (training); without one, dropout is off (evaluation).")

    def __init__(self, lr: float = 0.1, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
                 variant: Optional[str] = None, seed: Optional[int] = None, init: Optional[str] = None,
                 image_size: Optional[int] = None, weights: Optional[str] = None):
        self.config = model_config(lr, num_classes, in_channels, variant, seed, init, image_size, weights)
        self.net = Sequential(*native_layers(LAYERS, self.spec, self.image_size))
        import_weights(self, self.config.initial_weights())

    def __call__(self, x, key=None):
        checks.check_input_shape(self.spec, x.shape, DATA_FORMAT, self.image_size)  # static while tracing
        return self.net(x, key)


def build_block(block: S.Block, in_channels: int) -> Sequential:
    """A NiN block: each convolution followed by a ReLU."""
    layers = []
    for conv in block.convs:
        pad = ((conv.padding, conv.padding), (conv.padding, conv.padding))
        layers += [Conv(in_channels, conv.out_channels, (conv.kernel_size, conv.kernel_size),
                        (conv.stride, conv.stride), padding=pad, **zero_init()), relu]
        in_channels = conv.out_channels
    return Sequential(*layers)


# each spec layer as an NNX layer, given its input's (C, H, W)
LAYERS = {
    S.Block: lambda layer, shape_in: build_block(layer, shape_in[0]),
    S.MaxPool: lambda layer, _: MaxPool2D(layer.size, layer.stride, layer.ceil_mode),
    S.AvgPool: lambda layer, _: AvgPool2D(layer.size, layer.stride, layer.ceil_mode),
    S.Dropout: lambda layer, _: Dropout(layer.rate),
    S.GlobalAvgPool: lambda layer, _: GlobalAvgPool2D(),
    S.Flatten: lambda layer, _: Flatten(),
    S.Dense: lambda layer, shape_in: Linear(int(np.prod(shape_in)), layer.out_features, **zero_init()),
}


def device_of(model: NiN) -> jax.Device:
    """Where the model's parameters are (JAX's default device for NumPy arrays a plain Flax loader put there)."""
    value = variables(model)[0][2].value
    return value.device if isinstance(value, jax.Array) else jax.devices()[0]


def dtype_of(model: NiN) -> np.dtype:
    return np.dtype(variables(model)[0][2].value.dtype)


def precision_of(model: NiN):
    """A context in which JAX computes at the model's precision: float64 needs JAX's x64 switch, which is
    global; ``enable_x64`` turns it on for the block only, so it never leaks into other code."""
    return runtime.x64() if dtype_of(model) == np.float64 else nullcontext()


class FlaxOps(ModelOps):
    """The hooks of ``nin_common.arch.model.ModelOps`` in Flax NNX; a float64 model stays float64."""

    conv_type = nnx.Conv
    weight_attr = "kernel"
    compiled: "weakref.WeakKeyDictionary[NiN, object]" = weakref.WeakKeyDictionary()  # `forward`, one per model

    def value(self, param):
        return param.value

    def assign(self, model, items):
        new = [(param, self.to_native(model, prefix, kind, value)) for prefix, kind, param, value in items]
        device = device_of(model)
        with precision_of(model):
            for param, value in new:
                param.value = jax.device_put(np.ascontiguousarray(value, dtype=param.value.dtype), device)

    def tensor(self, model, x):
        return jax.device_put(x, device_of(model))

    def forward(self, model, x):
        """Logits, dropout off, compiled once per model; the graph definition is closed over, not a static
        argument: it holds ``config``, which has a dict inside and is not hashable."""
        if model not in self.compiled:
            graphdef = nnx.graphdef(model)
            self.compiled[model] = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
        return self.compiled[model](nnx.state(model), x)

    def num_params(self, model):
        """Counted by Flax: the sizes of every ``nnx.Param`` in the module tree."""
        return sum(int(leaf.size) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


ops = FlaxOps(DATA_FORMAT)
export_weights, import_weights, layer_shapes, predict, num_params = ops.functions()
parametrized_layers, variables, to_canonical, forward = (ops.parametrized_layers, ops.variables, ops.to_canonical,
                                                         ops.forward)
