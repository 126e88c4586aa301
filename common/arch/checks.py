"""Input checks shared by every backend, so that bad input gets the same message everywhere."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from nin_common.arch.shapes import has_dense, min_image_size, survives
from nin_common.arch.spec import NetSpec

LAYOUT_TEXT = {"NCHW": "(batch, channels, height, width)", "NHWC": "(batch, height, width, channels)"}


def _fmt(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_input_shape(spec: NetSpec, shape: Sequence[int], data_format: str,
                      built_size: Optional[int] = None) -> None:
    """Raise ValueError unless ``shape`` is a batch of images this network can take.

    ``built_size`` is the image size a model with a fully connected head was built for.
    """
    shape = tuple(None if s is None else int(s) for s in shape)  # None: unknown while a graph is traced
    expected = f"a 4-D {data_format} array {LAYOUT_TEXT[data_format]}"
    if len(shape) != 4:
        raise ValueError(f"expected {expected} with {spec.in_channels} channel(s), "
                         f"got a {len(shape)}-D array of shape {_fmt(shape)}")
    c_axis, other = (1, 3) if data_format == "NCHW" else (3, 1)
    if shape[c_axis] not in (None, spec.in_channels):
        hint = ""
        if shape[other] == spec.in_channels:
            theirs = "NHWC" if data_format == "NCHW" else "NCHW"
            hint = f"; it looks like {theirs}, but this backend expects {data_format}"
        raise ValueError(f"expected {expected} with {spec.in_channels} channel(s) on axis {c_axis}, "
                         f"got shape {_fmt(shape)} with {shape[c_axis]} on axis {c_axis}{hint}")
    h, w = (shape[2], shape[3]) if data_format == "NCHW" else (shape[1], shape[2])
    if None in (h, w):
        return
    if built_size is not None and has_dense(spec) and (h, w) != (built_size, built_size):
        raise ValueError(f"expected {built_size}x{built_size} images (this model's fully connected head "
                         f"was built for that size), got {h}x{w} in shape {_fmt(shape)}")
    if not (survives(spec, h) and survives(spec, w)):
        raise ValueError(f"expected images of at least {min_image_size(spec)}x{min_image_size(spec)} "
                         f"(smaller ones do not survive the network's convolutions and poolings), "
                         f"got {h}x{w} in shape {_fmt(shape)}")
    if shape[0] is not None and shape[0] < 1:
        raise ValueError(f"expected at least one image in the batch, got shape {_fmt(shape)}")


def check_input_array(spec: NetSpec, x, data_format: str, built_size: Optional[int] = None,
                      dtype=np.float32) -> np.ndarray:
    """Check a NumPy batch (dtype and shape) and return it as ``dtype`` (float32 unless a float64 model asks)."""
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":
        raise ValueError(f"expected a real numeric array (float or integer), got dtype {x.dtype}")
    check_input_shape(spec, x.shape, data_format, built_size)
    with np.errstate(over="ignore", invalid="ignore"):  # what overflows is counted just below
        x = x.astype(dtype, copy=False)
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ValueError(f"expected finite input values, got {bad} NaN or infinite value(s) in the batch of "
                         f"shape {_fmt(x.shape)}")
    return x


def check_labels(spec: NetSpec, y, batch: int) -> np.ndarray:
    """Check class labels for a batch of ``batch`` images and return them as int64."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu" or y.shape != (batch,):
        raise ValueError(f"expected {batch} integer class labels (shape ({batch},)), "
                         f"got dtype {y.dtype} and shape {_fmt(y.shape)}")
    if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
        raise ValueError(f"expected class labels in 0..{spec.num_classes - 1}, got {y.min()}..{y.max()}")
    return y.astype(np.int64)


def check_step(spec: NetSpec, images_u8, labels):
    """What every backend's training and evaluation step checks first: a uint8 batch (B, 28, 28) of
    Fashion-MNIST-sized images and its B labels, each a class of the network.  Returns (images, int64 labels)."""
    images = np.asarray(images_u8)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[0] < 1:
        raise ValueError(f"expected a uint8 batch of images (batch, height, width), got dtype {images.dtype} "
                         f"and shape {_fmt(images.shape)}")
    return images, check_labels(spec, labels, images.shape[0])


def check_batch(spec: NetSpec, x, y, data_format: str, built_size: Optional[int] = None, dtype=np.float32):
    """Check images and their labels together: (images as ``dtype``, int64 labels)."""
    x = check_input_array(spec, x, data_format, built_size, dtype)
    return x, check_labels(spec, y, x.shape[0])
