"""Native JAX checkpoints: the model's ``nnx.Param`` state as a Flax msgpack file (``.msgpack``).

``flax.serialization`` writes a flat dictionary {parameter path: array} in msgpack, with NumPy arrays as
typed byte buffers: no pickle, no extra dependency (it ships with Flax), one file.  Orbax, the JAX world's
checkpoint manager, writes a folder of TensorStore shards with asynchronous multi-host machinery, which a
2 MB single-host model does not need and which would not fit the one-file ``save_native`` contract.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization

from common.engine import checkpoint as ck

from . import model as _model
from .model import NiN


def _flat(model: NiN) -> dict:
    """{"net/layers/0/layers/0/kernel": the NNX parameter, ...}: every ``nnx.Param`` by its path."""
    return {"/".join(str(k) for k in path): var for path, var in nnx.state(model, nnx.Param).flat_state()}


def _write(model: NiN, path) -> None:
    arrays = {name: np.asarray(var.value) for name, var in _flat(model).items()}
    with open(path, "wb") as f:
        f.write(serialization.msgpack_serialize(arrays))


def _read(model: NiN, path) -> None:
    """Fill ``model`` from a msgpack file; ValueError (before anything changes) when names or shapes differ."""
    with open(path, "rb") as f:
        saved = serialization.msgpack_restore(f.read())
    if not isinstance(saved, dict):
        raise ValueError(f"expected a dictionary of arrays, got {type(saved).__name__}")
    params = _flat(model)
    missing, unexpected = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
    if missing or unexpected:
        raise ValueError(f"expected parameters {', '.join(params)}; missing: {', '.join(missing) or 'none'}, "
                         f"unexpected: {', '.join(unexpected) or 'none'}")
    for name, var in params.items():
        got = np.asarray(saved[name])
        if got.shape != var.value.shape:
            raise ValueError(f"{name}: expected shape {var.value.shape}, got {got.shape}")
    for name, var in params.items():
        var.value = jnp.asarray(saved[name], dtype=var.value.dtype)


def save_native(model: NiN, path) -> None:
    """Write the parameters (and their description ``<path>.json``) atomically."""
    ck.save(_model, model, path, _write)


def load_native(path, model: NiN = None) -> NiN:
    """Load a native checkpoint into ``model`` (or a new model built from its description); all or nothing."""
    return ck.load(_model, path, model, _read, (ValueError, KeyError, TypeError))
