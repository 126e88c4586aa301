"""NiN in JAX with Flax NNX, built by walking the spec in ``common``.  Inputs are NHWC."""
from __future__ import annotations

import weakref
from contextlib import nullcontext
from typing import Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from . import runtime

from nin_common.arch import checks, shapes
from nin_common.arch import spec as S
from nin_common.arch.config import configure
from nin_common.arch.weights import canonical_layers, canonical_to_nhwc, check_weights, nhwc_to_canonical

BACKEND = "jax"
DATA_FORMAT = "NHWC"


def _pool(x, init, op, size: int, stride: int, ceil_mode: bool):
    """``lax.reduce_window`` over H and W of an NHWC batch; ``ceil_mode`` pads the bottom and right so that the
    partial last window counts (Caffe, PyTorch ``ceil_mode=True``, MXNet ``'full'``)."""
    pads = [(0, 0), (0, 0), (0, 0), (0, 0)]
    if ceil_mode:
        for axis in (1, 2):
            n = x.shape[axis]
            pads[axis] = (0, max(0, (shapes.pool_out(n, size, stride, True) - 1) * stride + size - n))
    return jax.lax.reduce_window(x, init, op, (1, size, size, 1), (1, stride, stride, 1), pads)


class MaxPool2D(nnx.Module):
    """Max pooling (``size``/``stride``, no padding; ``ceil_mode``: the output size rounds up)."""

    def __init__(self, size: int, stride: int, ceil_mode: bool = False):
        self.size, self.stride, self.ceil_mode = size, stride, ceil_mode

    def __call__(self, x, key=None):
        return _pool(x, -jnp.inf, jax.lax.max, self.size, self.stride, self.ceil_mode)


class AvgPool2D(MaxPool2D):
    """Average pooling; a partial last window (``ceil_mode``) averages only its in-image elements."""

    def __call__(self, x, key=None):
        sums = _pool(x, 0.0, jax.lax.add, self.size, self.stride, self.ceil_mode)
        if not self.ceil_mode:
            return sums / (self.size * self.size)
        ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
        return sums / _pool(ones, 0.0, jax.lax.add, self.size, self.stride, True)


class Dropout(nnx.Module):
    """Inverted dropout with an explicit PRNG ``key``: active only when one is given (training)."""

    def __init__(self, rate: float):
        self.rate = rate

    def __call__(self, x, key=None):
        if key is None or self.rate == 0:
            return x
        keep = jax.random.bernoulli(key, 1.0 - self.rate, x.shape)
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros((), x.dtype))


class GlobalAvgPool2D(nnx.Module):
    """The mean over height and width: (N, H, W, C) -> (N, C), like Keras' GlobalAveragePooling2D."""

    def __call__(self, x, key=None):
        return jnp.mean(x, axis=(1, 2))


class Flatten(nnx.Module):
    """(N, ...) -> (N, prod(...)), in H, W, C order for an NHWC map."""

    def __call__(self, x, key=None):
        return x.reshape(x.shape[0], -1)


class Linear(nnx.Linear):
    """``nnx.Linear`` taking (and ignoring) the dropout ``key`` every layer of the net is called with."""

    def __call__(self, x, key=None):
        return super().__call__(x)


class Conv(nnx.Conv):
    """``nnx.Conv`` taking (and ignoring) the dropout ``key``."""

    def __call__(self, x, key=None):
        return super().__call__(x)


@jax.custom_vjp
def _relu(x):
    return jnp.maximum(x, 0)


def _relu_forward(x):
    out = jnp.maximum(x, 0)
    return out, out


def _relu_backward(out, g):
    return (jnp.where(out > 0, g, jnp.zeros((), g.dtype)),)


_relu.defvjp(_relu_forward, _relu_backward)


def relu(x, key=None):
    """ReLU whose gradient is computed from its output, as PyTorch's is: the backward pass keeps the output
    (also the next layer's input) and nothing else.  ``jax.nn.relu``'s rule keeps its input's sign as a mask
    and a zero array the size of the activation besides, when its forward pass is compiled apart from its
    backward pass (measured with ``nin resources --measure``: 2.3x the analytic memory)."""
    return _relu(x)


# flax 0.12 and later: a list of modules held by a module must be marked as data (nnx.List); flax 0.10-0.11 have no
# nnx.List and take a plain list
LayerList = getattr(nnx, "List", list)


class Sequential(nnx.Module):
    """Layers run in order, each called with the dropout ``key`` (its own, split per layer that needs one).

    Iterable like ``torch.nn.Sequential``; ``layers`` is the list, as in ``nnx.Sequential``.
    """

    def __init__(self, *layers):
        self.layers = LayerList(layers)

    def __call__(self, x, key=None):
        for i, layer in enumerate(self.layers):
            x = layer(x, None if key is None else jax.random.fold_in(key, i))
        return x

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]


def _rngs() -> nnx.Rngs:
    """NNX layers want an ``Rngs`` even when every initializer is zeros (the weights come from ``common``)."""
    return nnx.Rngs(0)


def build_block(block: S.Block, in_channels: int) -> Sequential:
    """A NiN block: each convolution followed by a ReLU."""
    layers = []
    for conv in block.convs:
        pad = ((conv.padding, conv.padding), (conv.padding, conv.padding))
        layers += [Conv(in_channels, conv.out_channels, (conv.kernel_size, conv.kernel_size),
                        (conv.stride, conv.stride), padding=pad, kernel_init=nnx.initializers.zeros,
                        rngs=_rngs()), relu]
        in_channels = conv.out_channels
    return Sequential(*layers)


def nin_block(out_channels: int, kernel_size: int, strides: int, padding: int, *, in_channels: int = 1,
              num_1x1: int = 2, inner_kernel_size: int = 1) -> Sequential:
    """The chapter's ``nin_block``.  NNX creates parameters on construction, so the input channels must be
    known: ``in_channels`` (default 1, Fashion-MNIST's gray images).  Weights start at zero."""
    return build_block(S.nin_stage(out_channels, kernel_size, strides, padding, num_1x1, inner_kernel_size),
                       in_channels)


def build_net(spec: S.NetSpec, image_size: int) -> Sequential:
    feats = shapes.feature_shapes(spec, image_size)
    inputs = [(spec.in_channels, image_size, image_size)] + feats[:-1]
    layers = []
    for layer, feat_in in zip(spec.layers, inputs):
        if isinstance(layer, S.Block):
            layers.append(build_block(layer, feat_in[0]))
        elif isinstance(layer, S.MaxPool):
            layers.append(MaxPool2D(layer.size, layer.stride, layer.ceil_mode))
        elif isinstance(layer, S.AvgPool):
            layers.append(AvgPool2D(layer.size, layer.stride, layer.ceil_mode))
        elif isinstance(layer, S.Dropout):
            layers.append(Dropout(layer.rate))
        elif isinstance(layer, S.GlobalAvgPool):
            layers.append(GlobalAvgPool2D())
        elif isinstance(layer, S.Flatten):
            layers.append(Flatten())
        elif isinstance(layer, S.Dense):
            layers.append(Linear(int(np.prod(feat_in)), layer.out_features, kernel_init=nnx.initializers.zeros,
                                 rngs=_rngs()))
        else:  # pragma: no cover
            raise TypeError(f"unknown layer {layer!r}")
    return Sequential(*layers)


class NiN(nnx.Module):
    """Network in Network (D2L 8.3), a Flax NNX module.  ``self.net`` holds the top-level layers in the
    chapter's order (iterable, and as the list ``self.net.layers``).

    Parameters exist and are initialised on construction: drawn by ``common`` with NumPy from
    ``seed`` (``init="xavier"`` as in the chapter, or ``"kaiming"``), so the same seed gives
    bit-identical weights in every backend.  ``weights="quick"`` starts from trained weights shipped with
    the package (``nin_common.arch.pretrained``); the image size and init then follow from them.  Inputs are NHWC.  ``model(x, key)`` runs dropout with the
    PRNG ``key`` (training); without one, dropout is off (evaluation).
    """

    def __init__(self, lr: float = 0.1, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
                 variant: Optional[str] = None, seed: Optional[int] = None, init: Optional[str] = None,
                 image_size: Optional[int] = None, weights: Optional[str] = None):
        config = configure(self, lr, num_classes, in_channels, variant, seed, init, image_size, weights)
        self.net = build_net(config.spec, config.image_size)
        import_weights(self, config.initial_weights())

    def __call__(self, x, key=None):
        checks.check_input_shape(self.spec, x.shape, DATA_FORMAT, self.image_size)  # static while tracing
        return self.net(x, key)


def parametrized_layers(model: NiN) -> List[Tuple[str, nnx.Module]]:
    """(canonical prefix, native layer) of every layer with parameters, in network order."""
    return canonical_layers(model.spec, model.net.layers,
                            lambda blk: [m for m in blk.layers if isinstance(m, nnx.Conv)])


def variables(model: NiN) -> List[Tuple[str, str, nnx.Param]]:
    """(canonical prefix, "weight" or "bias", NNX parameter) of every parameter, in network order."""
    return [(prefix, kind, layer.kernel if kind == "weight" else layer.bias)
            for prefix, layer in parametrized_layers(model) for kind in ("weight", "bias")]


def dtype_of(model: NiN) -> np.dtype:
    return np.dtype(variables(model)[0][2].value.dtype)


def precision_of(model: NiN):
    """A context in which JAX computes at the model's precision: float64 needs JAX's x64 switch, which is
    global; ``enable_x64`` turns it on for the block only, so it never leaks into other code."""
    return runtime.x64() if dtype_of(model) == np.float64 else nullcontext()


def to_canonical(model: NiN, prefix: str, kind: str, native) -> np.ndarray:
    """One native array (a kernel, its gradient, a bias) in canonical layout, its dtype kept: a writable copy
    (``np.asarray`` of a JAX array on the CPU is a read-only view of its buffer)."""
    return nhwc_to_canonical(model.spec, model.image_size, prefix, kind, np.array(native))


def export_weights(model: NiN) -> Dict[str, np.ndarray]:
    """Canonical weights: conv OIHW, dense (out, in) with inputs in C, H, W order, float32 NumPy."""
    return {f"{prefix}.{kind}": to_canonical(model, prefix, kind, param.value).astype(np.float32, copy=False)
            for prefix, kind, param in variables(model)}


def import_weights(model: NiN, weights) -> None:
    """Load canonical weights; every name and shape is checked before the model is touched."""
    weights = check_weights(model.spec, weights, model.image_size)
    new = [(param, canonical_to_nhwc(model.spec, model.image_size, prefix, kind, weights[f"{prefix}.{kind}"]))
           for prefix, kind, param in variables(model)]
    device = device_of(model)
    with precision_of(model):  # a float64 model (``parity.as_float64``) stays float64
        for param, value in new:
            param.value = jax.device_put(np.ascontiguousarray(value, dtype=param.value.dtype), device)


# Compiled forward passes, one per model.  The model's graph definition (``nnx.split``) is closed over rather
# than passed as a static argument: it holds the model's description (``config``, a dict inside), which is not
# hashable.
_FORWARD: "weakref.WeakKeyDictionary[NiN, object]" = weakref.WeakKeyDictionary()


def forward(model: NiN, x):
    """The model's logits for a batch (a JAX array), dropout off, compiled with ``jax.jit``."""
    if model not in _FORWARD:
        graphdef = nnx.graphdef(model)
        _FORWARD[model] = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    return _FORWARD[model](nnx.state(model), x)


def device_of(model: NiN) -> jax.Device:
    """Where the model's parameters are (JAX's default device for NumPy arrays a plain Flax loader put there)."""
    value = variables(model)[0][2].value
    return value.device if isinstance(value, jax.Array) else jax.devices()[0]


def layer_shapes(model: NiN, input_shape) -> List[Tuple[str, Tuple[int, ...]]]:
    """(layer class name, output shape) of each top-level layer, measured by running the layers."""
    checks.check_input_shape(model.spec, input_shape, DATA_FORMAT, model.image_size)
    X = jnp.zeros(tuple(input_shape), device=device_of(model))
    out = []
    for layer in model.net.layers:
        X = layer(X)
        out.append((type(layer).__name__, tuple(X.shape)))
    return out


def predict(model: NiN, x) -> np.ndarray:
    """Logits (N, num_classes) as NumPy, in evaluation mode; ``x`` is an NHWC NumPy batch."""
    x = checks.check_input_array(model.spec, x, DATA_FORMAT, model.image_size)
    return np.asarray(forward(model, jax.device_put(x, device_of(model))), dtype=np.float32)


def num_params(model: NiN) -> int:
    """Counted by Flax: the sizes of every ``nnx.Param`` in the module tree."""
    return sum(int(leaf.size) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
