"""A float64 NumPy forward pass: the framework-free truth the four backends are checked against.

It walks the same spec as the backends, with canonical weights (conv OIHW, dense (out, in) with
inputs in C, H, W order), on NCHW batches.  Every layer is vectorised: convolutions are one matrix
product over a strided window view (im2col without copies until the product), pooling a max over
the same kind of view.  Outputs are canonical NCHW; global average pooling keeps (C, 1, 1) as the
NCHW backends do.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nin_common.arch import spec as S
from nin_common.arch.shapes import pool_out


def windows(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """(N, C, H, W) -> (N, C, Ho, Wo, size, size): every size x size window at the given stride (a view)."""
    return sliding_window_view(x, (size, size), axis=(2, 3))[:, :, ::stride, ::stride]


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Cross-correlation of an NCHW batch with OIHW weights, zero padding, then the bias."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = windows(x, weight.shape[2], stride)  # (N, C, Ho, Wo, kh, kw)
    out = np.tensordot(cols, weight, axes=([1, 4, 5], [1, 2, 3]))  # (N, Ho, Wo, O)
    return np.ascontiguousarray((out + bias).transpose(0, 3, 1, 2))


def _pool_windows(x: np.ndarray, size: int, stride: int, ceil_mode: bool, fill: float) -> np.ndarray:
    """The pooling windows, without padding; ``ceil_mode`` lets a partial last window count (as PyTorch and
    Caffe), its outside filled with ``fill``."""
    h, w = x.shape[2:]
    oh, ow = pool_out(h, size, stride, ceil_mode), pool_out(w, size, stride, ceil_mode)
    pad_h, pad_w = max(0, (oh - 1) * stride + size - h), max(0, (ow - 1) * stride + size - w)
    if pad_h or pad_w:
        x = np.pad(x, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), constant_values=fill)
    return windows(x, size, stride)[:, :, :oh, :ow]


def max_pool(x: np.ndarray, size: int, stride: int, ceil_mode: bool = False) -> np.ndarray:
    """Max pooling without padding; ``ceil_mode`` lets a partial last window count (as PyTorch and Caffe)."""
    return _pool_windows(x, size, stride, ceil_mode, -np.inf).max(axis=(4, 5))


def avg_pool(x: np.ndarray, size: int, stride: int, ceil_mode: bool = False) -> np.ndarray:
    """Average pooling without padding; a partial last window (``ceil_mode``) averages its in-image elements
    only (Caffe's AVE pooling, PyTorch ``AvgPool2d(ceil_mode=True)``)."""
    return np.nanmean(_pool_windows(x, size, stride, ceil_mode, np.nan), axis=(4, 5))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _block(layer: S.Block, x: np.ndarray, names, w, preactivations) -> np.ndarray:
    for p, conv in zip(names, layer.convs):
        z = conv2d(x, w[f"{p}.weight"], w[f"{p}.bias"], conv.stride, conv.padding)
        if preactivations is not None:
            preactivations[p] = z
        x = relu(z)
    return x


def _dense(layer: S.Dense, x: np.ndarray, names, w, preactivations) -> np.ndarray:
    (p,) = names
    return x.reshape(x.shape[0], -1) @ w[f"{p}.weight"].T + w[f"{p}.bias"]


# each spec layer as a function of (layer, input, its canonical parameter prefixes, weights, preactivations)
LAYERS = {
    S.Block: _block,
    S.MaxPool: lambda layer, x, *_: max_pool(x, layer.size, layer.stride, layer.ceil_mode),
    S.AvgPool: lambda layer, x, *_: avg_pool(x, layer.size, layer.stride, layer.ceil_mode),
    S.Dropout: lambda layer, x, *_: x,  # evaluation mode
    S.GlobalAvgPool: lambda layer, x, *_: x.mean(axis=(2, 3), keepdims=True),
    S.Flatten: lambda layer, x, *_: x.reshape(x.shape[0], -1),
    S.Dense: _dense,
}


def layer_outputs(spec: S.NetSpec, weights: Mapping[str, np.ndarray], x,
                  preactivations: Optional[Dict[str, np.ndarray]] = None) -> List[np.ndarray]:
    """The output of every top-level layer (canonical layout, float64) for an NCHW batch ``x``.

    Dropout is the identity (evaluation mode).  ``preactivations``, if given, receives every
    convolution's output before its ReLU, by canonical prefix (``block1.conv2``).
    """
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    x = np.asarray(x, np.float64)
    outs = []
    for layer, names in zip(spec.layers, spec.param_names):
        x = S.dispatch(LAYERS, layer)(layer, x, names, w, preactivations)
        outs.append(x)
    return outs


def forward(spec: S.NetSpec, weights: Mapping[str, np.ndarray], x) -> np.ndarray:
    """Logits (N, num_classes), float64."""
    return layer_outputs(spec, weights, x)[-1]


def cross_entropy(logits: np.ndarray, labels) -> float:
    """Mean softmax cross-entropy, float64, computed stably (log-sum-exp)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    labels = np.asarray(labels, np.int64)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def resize_bilinear(x: np.ndarray, size: int) -> np.ndarray:
    """NCHW images resized to ``size`` x ``size`` as every backend's input pipeline does: bilinear with
    half-pixel centres (PyTorch's ``align_corners=False``, TensorFlow's ``half_pixel_centers``), no antialiasing,
    source coordinates clamped to the image; float64."""
    x = np.asarray(x, dtype=np.float64)

    def taps(n_in: int):
        src = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    (r0, r1, fr), (c0, c1, fc) = taps(x.shape[2]), taps(x.shape[3])
    rows = x[:, :, r0, :] * (1 - fr)[:, None] + x[:, :, r1, :] * fr[:, None]
    return rows[:, :, :, c0] * (1 - fc) + rows[:, :, :, c1] * fc
