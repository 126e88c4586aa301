"""Native JAX checkpoints: the model's ``nnx.Param`` state in Flax's msgpack format (``.msgpack``).

The file is ``flax.serialization.to_bytes(nnx.state(model, nnx.Param).to_pure_dict())``: msgpack with NumPy
arrays as typed byte buffers, no pickle, no extra dependency (it ships with Flax), one file; a Flax user
reads it back with ``from_bytes(nnx.state(model, nnx.Param).to_pure_dict(), data)`` and
``State.replace_by_pure_dict``.  Orbax, the JAX world's checkpoint manager, writes a folder of TensorStore
shards through asynchronous multi-host machinery, which a 2 MB single-host model does not need and which
would not fit the one-file ``save_native`` contract.
"""
from __future__ import annotations

import jax
import msgpack
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization

from nin_common.engine import checkpoint as ck

from . import model as _model
from .model import NiN


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"net/layers/0/layers/0/kernel": array, ...} from a nested dictionary (msgpack keys are strings)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        out.update(_flat(value, name) if isinstance(value, dict) else {name: value})
    return out


def _write(model: NiN, path) -> None:
    with open(path, "wb") as f:
        f.write(serialization.to_bytes(nnx.state(model, nnx.Param).to_pure_dict()))


def _read(model: NiN, path) -> None:
    """Fill ``model`` from a msgpack file; ValueError (before anything changes) when names or shapes differ.

    (``from_bytes`` alone checks neither: it fills what it finds.)"""
    with open(path, "rb") as f:
        data = f.read()
    saved = serialization.msgpack_restore(data)
    if not isinstance(saved, dict):
        raise ValueError(f"expected a dictionary of arrays, got {type(saved).__name__}")
    state = nnx.state(model, nnx.Param)
    expected, got = _flat(state.to_pure_dict()), _flat(saved)
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unexpected:
        raise ValueError(f"missing parameters: {', '.join(missing) or 'none'}; unexpected: "
                         f"{', '.join(unexpected) or 'none'}")
    for name, value in expected.items():
        if np.shape(got[name]) != value.shape:
            raise ValueError(f"{name}: expected shape {value.shape}, got {np.shape(got[name])}")
    restored = serialization.from_state_dict(state.to_pure_dict(), saved)
    state.replace_by_pure_dict(jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), restored))
    nnx.update(model, state)


def save_native(model: NiN, path) -> None:
    """Write the parameters (and their description ``<path>.json``) atomically."""
    ck.save(_model, model, path, _write)


def load_native(path, model: NiN = None) -> NiN:
    """Load a native checkpoint into ``model`` (or a new model built from its description); all or nothing."""
    return ck.load(_model, path, model, _read, (ValueError, KeyError, TypeError, IndexError, OverflowError,
                                                msgpack.exceptions.UnpackException))
