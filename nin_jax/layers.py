"""Flax NNX layers for the NiN of ``nin_jax.model``: pooling (with Caffe's ceil mode), dropout with an explicit PRNG
key, a ReLU whose gradient reads its output, and a ``Sequential`` that hands each layer its own key.  Every layer
is called as ``layer(x, key=None)``."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nin_common.arch import shapes


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


def zero_init() -> dict:
    """Arguments of ``Conv`` and ``Linear`` that start them at zero (the weights come from ``common``): NNX layers
    want an ``Rngs`` even when every initializer is zeros."""
    return dict(kernel_init=nnx.initializers.zeros, rngs=nnx.Rngs(0))
