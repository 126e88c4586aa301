"""Canonical weights: names, layout, initialisation, and .npz files.

Canonical names are ``block{b}.conv{c}.weight`` (OIHW, float32) and ``block{b}.conv{c}.bias``,
with ``b`` the stage index and ``c`` the convolution's index inside it, both from 0;
a fully connected head adds ``dense{d}.weight`` ((out, in), inputs in C, H, W order) and
``dense{d}.bias``.  Every backend exports and imports exactly this form.
"""
from __future__ import annotations

import math
import os
import zipfile
import zlib
from typing import Dict, Mapping, Optional

import numpy as np

from nin_common.util.files import atomic_path, first_line
from nin_common.util.values import check_choice
from nin_common.arch.shapes import dense_unflattened_inputs, param_shapes
from nin_common.arch.spec import NetSpec

Weights = Dict[str, np.ndarray]
INITS = ("xavier", "kaiming", "kaiming-alive", "kaiming-alive-all")
# kaiming-alive: the biases the class block's first convolution starts with (see initial_weights)
ALIVE_BIAS = 1.0


def check_weights(spec: NetSpec, weights: Mapping[str, object], image_size: int = 224) -> Weights:
    """Validate names and shapes against the spec; return float32 arrays.

    Raises ValueError listing every missing, unexpected and mis-shaped array, before
    anything is touched.
    """
    expected = param_shapes(spec, image_size)
    problems = []
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected: " + ", ".join(sorted(unexpected)))
    out: Weights = {}
    for name, shape in expected.items():
        if name not in weights:
            continue
        arr = np.asarray(weights[name])
        if arr.dtype.kind not in "iuf":
            problems.append(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
        elif tuple(arr.shape) != shape:
            problems.append(f"{name}: expected shape {shape}, got {tuple(arr.shape)}")
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # what overflows is counted just below
                out[name] = np.ascontiguousarray(arr, dtype=np.float32)
            bad = non_finite(out[name])
            if bad:  # after the cast: float64 1e300 is inf in float32
                problems.append(f"{name}: expected finite float32 values, got {bad} NaN or infinite")
    if problems:
        raise ValueError("weights do not fit this network (" + spec.name + "): " + "; ".join(problems))
    return out


def non_finite(arr: np.ndarray) -> int:
    """How many values of ``arr`` are NaN or infinite."""
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))


def initial_weights(spec: NetSpec, seed: Optional[int] = None, init: str = "xavier",
                    image_size: int = 224) -> Weights:
    """Draw the initial weights once, with NumPy, so every backend starts bit-identical.

    ``xavier``: the chapter's Glorot-uniform weights (MXNet ``init.Xavier()``, d2l ``init_cnn``),
    biases zero.  ``kaiming``: He-normal weights (std sqrt(2 / fan_in)), biases zero; this one
    leaves the chapter's plateau at loss 2.303 within a few hundred steps.

    ``kaiming-alive``: He-normal, but the block that produces the class scores starts with every class alive.
    NiN ends in ReLUs: a class whose channel is <= 0 on every image gets no gradient and is never predicted.
    With He-normal weights the channel's inputs (post-ReLU features, all >= 0, similar across images) make its
    sign the same for nearly every image: 0-7 of the 10 classes start dead (seeds 0-19, 256 test images at
    67 px), and lr 0.05's first steps kill more.  Training revives most, not all: the quick recipe with plain
    He-normal ended seed 1 with three classes never predicted (test accuracy 0.66).  So, as AlexNet started
    some ReLUs with biases of 1, the class block's first convolution gets biases of ``ALIVE_BIAS`` (1; 0.5
    still left 4 dead classes over seeds 0-9) and its later convolutions start as the identity (Dirac weights,
    where they have as many inputs as outputs: they pass the non-negative inputs through their ReLUs
    unchanged).  No class starts dead in seeds 0-19.
    Other layers are drawn exactly as ``kaiming`` draws them.

    ``kaiming-alive-all``: ``kaiming-alive`` for a last block of any shape, the one the classes are read from
    (the class scores' block, or the block before a fully connected head).  Its first convolution gets biases of
    ``ALIVE_BIAS``, and each later convolution starts as the mean of a group of its input channels (the identity
    where it has as many inputs as outputs), non-negative, so every channel starts alive.  On the chapter's
    shape it is ``kaiming-alive`` exactly.  Where ``kaiming-alive`` changes nothing or too little, He-normal
    starts 2-6 of ``gradual``'s 10 class channels dead (384 -> 192 -> 96 -> 10: no square convolution to start
    as the identity), 0-6 of ``fc-head``'s 10 and 116-153 of ``fc-head-wide``'s 384 (seeds 0-9, 256 test
    images at 67 px); this init starts none dead.
    """
    check_choice("init", init, INITS)
    rng = np.random.default_rng(seed)
    out: Weights = {}
    for name, shape in param_shapes(spec, image_size).items():
        if name.endswith(".bias"):
            out[name] = np.zeros(shape, np.float32)
            continue
        receptive = math.prod(shape[2:]) if len(shape) == 4 else 1
        fan_out, fan_in = shape[0] * receptive, shape[1] * receptive
        if init == "xavier":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            w = rng.uniform(-limit, limit, size=shape)
        else:
            w = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
        out[name] = w.astype(np.float32)
    if init in ("kaiming-alive", "kaiming-alive-all"):
        _start_classes_alive(spec, out, any_shape=init == "kaiming-alive-all")
    return out


def _start_classes_alive(spec: NetSpec, weights: Weights, any_shape: bool = False) -> None:
    """``kaiming-alive``'s change to He-normal weights, in place (a network ending in a Dense layer has no ReLU on
    its class scores and is left as it is); with ``any_shape`` (``kaiming-alive-all``), the last block of any
    network, its narrowing convolutions as channel-group means."""
    from nin_common.arch.spec import Block

    at = max(i for i, names in enumerate(spec.param_names) if names)  # the layer that makes the class scores
    if any_shape:
        at = max(i for i, layer in enumerate(spec.layers) if isinstance(layer, Block))
    if not isinstance(spec.layers[at], Block):
        return
    names = spec.param_names[at]
    weights[f"{names[0]}.bias"][:] = ALIVE_BIAS
    for name in names[1:]:
        w = weights[f"{name}.weight"]
        out_c, in_c, kh, kw = w.shape
        if out_c == in_c or any_shape:
            w[:] = 0
            for c, group in enumerate(np.array_split(np.arange(in_c), out_c)):  # Dirac where square: the identity
                group = group if len(group) else np.array([c % in_c])  # a widening one copies its inputs
                w[c, group, kh // 2, kw // 2] = 1.0 / len(group)


def save_npz(path: str, weights: Mapping[str, np.ndarray], **meta) -> None:
    """Write weights (and scalar metadata) atomically as .npz."""
    arrays = {k: np.asarray(v) for k, v in weights.items()}
    arrays.update({f"__meta__.{k}": np.asarray(v) for k, v in meta.items()})
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def read_arrays(path, what: str = "a .npz file of arrays") -> Dict[str, np.ndarray]:
    """Every array of a .npz file, read completely; never unpickles.  A file that is not one (empty,
    truncated, damaged, another format, pickled objects) is a ValueError naming it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError(f"a single {type(data).__name__}, not a .npz archive")
            return {k: data[k] for k in data.files}
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error) as err:
        # ValueError: numpy refuses object (pickled) arrays when allow_pickle=False, or the bytes are not npy
        raise ValueError(f"expected {path} to be {what}, got a file numpy cannot read "
                         f"({first_line(err)}); nin never unpickles") from err


def load_npz(path: str):
    """Read weights (and metadata) from .npz; never unpickles (object arrays are refused)."""
    arrays = read_arrays(path, "a .npz file of weights (as nin writes)")
    weights = {k: v for k, v in arrays.items() if not k.startswith("__meta__.")}
    meta = {k[len("__meta__."):]: v.item() if v.ndim == 0 else v
            for k, v in arrays.items() if k.startswith("__meta__.")}
    return weights, meta


def canonical_layers(spec: NetSpec, native_layers, block_convs) -> list:
    """(canonical prefix, native layer) of every layer with parameters, in network order.

    ``native_layers`` are a backend's top-level layers (parallel to ``spec.layers``);
    ``block_convs(native_block)`` lists a native block's convolution layers in order.
    """
    from nin_common.arch.spec import Block, Dense

    out = []
    for layer, names, native in zip(spec.layers, spec.param_names, native_layers):
        if isinstance(layer, Block):
            out += list(zip(names, block_convs(native)))
        elif isinstance(layer, Dense):
            out.append((names[0], native))
    return out


# ---------------------------------------------------------------- channels-last (NHWC) layouts

def _dense_input_chw(spec: NetSpec, image_size: int, prefix: str) -> tuple:
    """The (C, H, W) feature shape flattened into dense layer ``prefix`` (``(C,)`` after global pooling)."""
    return dense_unflattened_inputs(spec, image_size)[int(prefix[len("dense"):])]


def nhwc_to_canonical(spec: NetSpec, image_size: int, prefix: str, kind: str, native) -> np.ndarray:
    """One array of a channels-last backend (a kernel, its gradient, a bias) in canonical layout, dtype kept.

    Conv kernels HWIO -> OIHW; dense kernels (in, out) whose inputs were flattened in H, W, C order ->
    (out, C*H*W); biases as they are.  Keras and Flax store both kernels this way.
    """
    native = np.asarray(native)
    if kind == "bias":
        return native
    if not prefix.startswith("dense"):
        return np.ascontiguousarray(native.transpose(3, 2, 0, 1))
    chw = _dense_input_chw(spec, image_size, prefix)
    if len(chw) != 3:
        return np.ascontiguousarray(native.T)
    c, h, w = chw
    return np.ascontiguousarray(native.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(-1, c * h * w))


def canonical_to_nhwc(spec: NetSpec, image_size: int, prefix: str, kind: str, canonical) -> np.ndarray:
    """The inverse of `nhwc_to_canonical`: a canonical array in a channels-last backend's layout."""
    canonical = np.asarray(canonical)
    if kind == "bias":
        return canonical
    if not prefix.startswith("dense"):
        return canonical.transpose(2, 3, 1, 0)
    chw = _dense_input_chw(spec, image_size, prefix)
    if len(chw) != 3:
        return canonical.T
    c, h, w = chw
    return canonical.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)
