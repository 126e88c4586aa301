"""Shape arithmetic and parameter counts, computed from the spec alone."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

from nin_common.arch.spec import AvgPool, Block, Dense, Dropout, Flatten, GlobalAvgPool, MaxPool, NetSpec

# A feature shape without the batch axis, in the canonical (channels-first) order:
# (C, H, W) for images, (F,) for flat features.
Feature = Tuple[int, ...]


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv_shapes(block: Block, shape: Feature) -> List[Feature]:
    """The output shape of each convolution of ``block``, given the block's input ``shape`` (C, H, W)."""
    _, h, w = shape
    out = []
    for conv in block.convs:
        h = conv_out(h, conv.kernel_size, conv.stride, conv.padding)
        w = conv_out(w, conv.kernel_size, conv.stride, conv.padding)
        out.append((conv.out_channels, h, w))
    return out


def pool_out(size: int, kernel: int, stride: int, ceil_mode: bool = False) -> int:
    if ceil_mode:
        out = -(-(size - kernel) // stride) + 1
        # as in PyTorch and Caffe: the last window must start inside the input
        if (out - 1) * stride >= size:
            out -= 1
        return out
    return (size - kernel) // stride + 1


def layer_name(layer) -> str:
    return type(layer).__name__


def feature_shapes(spec: NetSpec, height: int, width: int | None = None,
                   keepdims_gap: bool = True) -> List[Feature]:
    """Output feature shape (channels first, no batch axis) of each top-level layer.

    Sizes may become zero or negative for too-small inputs; `min_image_size` and
    `nin_common.arch.checks.check_input_shape` use that to explain the failure.
    """
    width = height if width is None else width
    shape: Feature = (spec.in_channels, height, width)
    out = []
    for layer in spec.layers:
        if isinstance(layer, Block):
            shape = conv_shapes(layer, shape)[-1]
        elif isinstance(layer, (MaxPool, AvgPool)):
            c, h, w = shape
            shape = (c, pool_out(h, layer.size, layer.stride, layer.ceil_mode),
                     pool_out(w, layer.size, layer.stride, layer.ceil_mode))
        elif isinstance(layer, GlobalAvgPool):
            shape = (shape[0], 1, 1) if keepdims_gap else (shape[0],)
        elif isinstance(layer, Flatten):
            shape = (math.prod(shape),)
        elif isinstance(layer, Dense):
            shape = (layer.out_features,)
        elif isinstance(layer, Dropout):
            pass
        else:  # pragma: no cover - a new layer kind must be taught here
            raise TypeError(f"unknown layer {layer!r}")
        out.append(shape)
    return out


def batch_shape(data_format: str, batch: int, channels: int, height: int, width: Optional[int] = None
                ) -> Tuple[int, int, int, int]:
    """The shape of a batch of images in a backend's layout (``"NCHW"`` or ``"NHWC"``); square by default."""
    width = height if width is None else width
    return (batch, channels, height, width) if data_format == "NCHW" else (batch, height, width, channels)


def array_to_layout(x_nchw, data_format: str):
    """An NCHW NumPy batch in a backend's layout (a contiguous copy for NHWC; the batch itself for NCHW)."""
    import numpy as np

    return np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)) if data_format == "NHWC" else x_nchw


def to_layout(feature: Feature, data_format: str) -> Tuple[int, ...]:
    """Feature shape in a backend's layout (no batch axis)."""
    if data_format == "NHWC" and len(feature) == 3:
        c, h, w = feature
        return (h, w, c)
    return tuple(feature)


def layer_shapes(spec: NetSpec, input_shape, data_format: str) -> List[Tuple[str, Tuple[int, ...]]]:
    """The chapter's shape table, analytically: (layer class, output shape in the backend layout)."""
    n, c, h, w = from_layout(input_shape, data_format)
    feats = feature_shapes(spec, h, w, keepdims_gap=(data_format == "NCHW"))
    return [(layer_name(layer), (n,) + to_layout(f, data_format)) for layer, f in zip(spec.layers, feats)]


def from_layout(shape, data_format: str) -> Tuple[int, int, int, int]:
    """(N, C, H, W) from a 4-D shape in the given layout."""
    if data_format == "NHWC":
        n, h, w, c = shape
    else:
        n, c, h, w = shape
    return n, c, h, w


def conv_param_shapes(spec: NetSpec) -> List[Tuple[str, Tuple[int, int, int, int], int]]:
    """(canonical prefix, OIHW weight shape, bias length) of every convolution."""
    out = []
    in_ch = spec.in_channels
    for layer, names in zip(spec.layers, spec.param_names):
        for name, conv in zip(names, layer.convs if isinstance(layer, Block) else ()):
            out.append((name, (conv.out_channels, in_ch, conv.kernel_size, conv.kernel_size), conv.out_channels))
            in_ch = conv.out_channels
    return out


def dense_param_shapes(spec: NetSpec, image_size: int) -> List[Tuple[str, Tuple[int, int], int]]:
    """(canonical prefix, (out, in) weight shape, bias length) of every Dense layer.

    The input features of a Dense layer are counted in channels-first (C, H, W) order.
    """
    inputs = [(spec.in_channels, image_size, image_size)] + feature_shapes(spec, image_size)[:-1]
    return [(names[0], (layer.out_features, math.prod(prev)), layer.out_features)
            for layer, names, prev in zip(spec.layers, spec.param_names, inputs) if isinstance(layer, Dense)]


def dense_unflattened_inputs(spec: NetSpec, image_size: int) -> List[Feature]:
    """For every Dense layer, its input as it was before a Flatten: (C, H, W) maps, or flat (F,) features.

    A backend whose Flatten does not walk C, H, W in that order (Keras flattens H, W, C) needs
    this to reorder the canonical (out, C*H*W) weight.
    """
    feats = [(spec.in_channels, image_size, image_size)] + feature_shapes(spec, image_size)
    out = []
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, Dense):
            j = i
            while j > 0 and len(feats[j]) != 3 and isinstance(spec.layers[j - 1], (Flatten, Dropout)):
                j -= 1
            out.append(feats[j])
    return out


def param_shapes(spec: NetSpec, image_size: int = 224) -> Dict[str, Tuple[int, ...]]:
    """Canonical parameter names and shapes (conv weights OIHW, dense weights (out, in))."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    for prefix, w, b in conv_param_shapes(spec) + dense_param_shapes(spec, image_size):
        shapes[f"{prefix}.weight"] = tuple(w)
        shapes[f"{prefix}.bias"] = (b,)
    return shapes


def has_dense(spec: NetSpec) -> bool:
    return any(isinstance(layer, Dense) for layer in spec.layers)


def num_params(spec: NetSpec, image_size: int = 224) -> int:
    return sum(math.prod(s) for s in param_shapes(spec, image_size).values())


def layer_params(spec: NetSpec, image_size: int = 224) -> List[int]:
    """Parameters held by each top-level layer."""
    shapes = param_shapes(spec, image_size)
    return [sum(math.prod(shapes[f"{name}.{kind}"]) for name in names for kind in ("weight", "bias"))
            for names in spec.param_names]


def survives(spec: NetSpec, size: int) -> bool:
    """Whether a size x size image keeps at least one pixel through every layer."""
    for conv_shape in _all_spatial(spec, size):
        if min(conv_shape) < 1:
            return False
    return True


def _all_spatial(spec: NetSpec, size: int):
    """Spatial sizes after every convolution and pooling (finer than feature_shapes)."""
    h = size
    for layer in spec.layers:
        if isinstance(layer, Block):
            for conv in layer.convs:
                h = conv_out(h, conv.kernel_size, conv.stride, conv.padding)
                yield (h,)
                if h < 1:
                    return
        elif isinstance(layer, (MaxPool, AvgPool)):
            if h < layer.size:
                yield (0,)
                return
            h = pool_out(h, layer.size, layer.stride, layer.ceil_mode)
            yield (h,)


def min_image_size(spec: NetSpec, limit: int = 4096) -> int:
    """The smallest square image size that survives every layer."""
    for size in range(1, limit + 1):
        if survives(spec, size):
            return size
    raise ValueError(f"no image size up to {limit} survives this network")
