"""Checkpoint bookkeeping shared by the backends.

A native checkpoint is the framework's own weight file (``model.pt``, ``model.params``,
``model.weights.h5``) with a ``<file>.json`` beside it holding the model's constructor
arguments, so that any backend can rebuild the model to load it into.
"""
from __future__ import annotations

import os

from common.engine import registry
from common.util.files import read_json, write_json


def config_path(path) -> str:
    return os.fspath(path) + ".json"


def write_config(path, backend: str, kwargs: dict) -> None:
    write_json(config_path(path), {"backend": backend, "model": kwargs, "format": "nin-native-1"})


def read_config(path) -> dict:
    cfg = config_path(path)
    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"no checkpoint at {os.fspath(path)}")
    if not os.path.exists(cfg):
        raise ValueError(f"expected the model description {cfg} beside checkpoint {os.fspath(path)}; it is missing")
    return read_json(cfg)


def backend_of(path) -> str:
    """Which backend wrote a checkpoint: from its description, else from its file ending."""
    if os.path.exists(config_path(path)):
        return read_json(config_path(path))["backend"]
    return registry.of_suffix(os.fspath(path))


def save(backend, model, path, write) -> None:
    """Write a native checkpoint atomically with ``write(model, tmp_path)``, then its description."""
    from common.util.files import atomic_path

    with atomic_path(path, registry.info(backend.BACKEND).native_suffix) as tmp:
        write(model, tmp)
    write_config(path, backend.BACKEND, model.config.kwargs)


def load(backend, path, model, read, errors):
    """Read a native checkpoint into ``model`` (or a new model built from its description).

    ``read(fresh_model, path)`` is the framework's own loader; it fills a fresh model built from the
    checkpoint's description, and ``errors`` are its exceptions for a file that does not fit.  Nothing in
    ``model`` changes unless the whole checkpoint fits it.
    """
    fresh = backend.NiN(**read_config(path)["model"])
    try:
        read(fresh, os.fspath(path))
    except errors as err:
        raise ValueError(f"checkpoint {path} does not fit its own description: {err}") from err
    if model is None:
        return fresh
    backend.import_weights(model, backend.export_weights(fresh))
    return model
