"""Checkpoint bookkeeping shared by the backends.

A native checkpoint is the framework's own weight file (``model.pt``, ``model.params``,
``model.weights.h5``) with a ``<file>.json`` beside it holding the model's constructor
arguments, so that any backend can rebuild the model to load it into.
"""
from __future__ import annotations

import hashlib
import os

from nin_common.arch.config import stored_config
from nin_common.arch.weights import check_weights
from nin_common.engine import registry
from nin_common.util.files import atomic_path, check_not_folder, first_line, read_json, write_json

CONFIG_FORMAT = "nin-native-1"
CONFIG_KEYS = ("backend", "model", "format", "sha256")
OPTIONAL_KEYS = ("sha256",)  # descriptions written before it was recorded have none


def config_path(path) -> str:
    return os.fspath(path) + ".json"


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_config(path, backend: str, kwargs: dict) -> None:
    """The description of the native file ``path``: its backend, model arguments and sha256 (any damage to
    the file is then found before its framework reads it: not every framework checks what it reads)."""
    write_json(config_path(path), {"backend": backend, "model": kwargs, "format": CONFIG_FORMAT,
                                   "sha256": sha256_of(path)})


def check_sha256(path, desc: dict) -> None:
    if "sha256" in desc and sha256_of(path) != desc["sha256"]:
        raise ValueError(f"expected {os.fspath(path)} to have the sha256 its description {config_path(path)} "
                         f"records, got another: the file is damaged or was replaced")


def read_config(path) -> dict:
    """The checked description of a native checkpoint: ``{"backend", "model", "format"}``."""
    cfg = config_path(path)
    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"no checkpoint at {os.fspath(path)}")
    if not os.path.exists(cfg):
        raise ValueError(f"expected the model description {cfg} beside checkpoint {os.fspath(path)}; it is missing")
    return check_config(read_json(cfg, "a model description (JSON)"), cfg)


def check_config(desc, cfg: str) -> dict:
    if not isinstance(desc, dict):
        raise ValueError(f"expected {cfg} to hold a JSON object with keys {', '.join(CONFIG_KEYS)}, "
                         f"got a {type(desc).__name__}")
    unknown = sorted(set(desc) - set(CONFIG_KEYS))
    missing = [k for k in CONFIG_KEYS if k not in desc and k not in OPTIONAL_KEYS]
    if unknown or missing:
        raise ValueError(f"expected {cfg} to hold the keys {', '.join(CONFIG_KEYS)}, got "
                         + "; ".join(([f"unknown {', '.join(map(repr, unknown))}"] if unknown else [])
                                     + ([f"no {', '.join(map(repr, missing))}"] if missing else [])))
    if desc["format"] != CONFIG_FORMAT:
        raise ValueError(f"expected format {CONFIG_FORMAT!r} in {cfg}, got {desc['format']!r}")
    if desc["backend"] not in registry.BACKENDS:
        raise ValueError(f"expected the backend in {cfg} to be one of {', '.join(registry.BACKENDS)}, "
                         f"got {desc['backend']!r}")
    stored_config(desc["model"], cfg)
    return desc


def backend_of(path) -> str:
    """Which backend wrote a checkpoint: from its description, else from its file ending."""
    if os.path.exists(config_path(path)):
        return read_config(path)["backend"]
    return registry.of_suffix(os.fspath(path))


def save(backend, model, path, write) -> None:
    """Write a native checkpoint atomically with ``write(model, tmp_path)``, then its description."""
    check_not_folder(config_path(path))
    with atomic_path(path, registry.info(backend.BACKEND).native_suffix) as tmp:
        write(model, tmp)
    write_config(path, backend.BACKEND, model.config.kwargs)


def unreadable(path, backend: str, reason, what: str = "") -> ValueError:
    """The one error for a native file its framework cannot load (empty, truncated, damaged, another format,
    other weights than its description announces): it names the file and quotes only the first line of the
    framework's message (``reason``: that exception, or words).  ``what`` the file should be, if not weights."""
    fw = registry.framework(backend)
    text = first_line(reason, 120) if isinstance(reason, BaseException) else reason
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        text = "the file is empty"
    what = what or f"a {registry.info(backend).native_suffix} weight file that fits its description"
    return ValueError(f"expected {os.fspath(path)} to be {what}, got one {fw} cannot load ({text})")


def load(backend, path, model, read, errors):
    """Read a native checkpoint into ``model`` (or a new model built from its description).

    ``read(fresh_model, path)`` is the framework's own loader; it fills a fresh model built from the
    checkpoint's description, and ``errors`` are its exceptions for a file that does not fit or cannot be
    read; they become a ValueError naming the file.  Nothing in ``model`` changes unless the whole
    checkpoint fits it and its weights are finite.
    """
    desc = read_config(path)
    check_sha256(path, desc)
    fresh = backend.NiN(**desc["model"])
    try:
        read(fresh, os.fspath(path))
    except errors as err:
        raise unreadable(path, backend.BACKEND, err) from err
    try:
        weights = check_weights(fresh.spec, backend.export_weights(fresh), fresh.image_size)
    except ValueError as err:
        raise ValueError(f"{os.fspath(path)}: {err}") from err
    if model is None:
        return fresh
    backend.import_weights(model, weights)
    return model
