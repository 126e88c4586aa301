"""Trained weights shipped with the package: ``NiN(weights="quick")`` in every backend.

Each entry of ``trained/index.json`` names one canonical ``.npz`` file in ``trained/`` (the layout of
``nin_common.arch.weights``: every backend reads the same file) and carries its metadata: the recipe and run that
trained it, the image size and init it implies, its measured test accuracy, the class names, the preprocessing a
raw image needs, the storage precision and the file's sha256.  The metadata is readable without building a model
(``metadata``); the arrays are read without pickle and only after the file's sha256 matches (``load``).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Optional, Tuple

import numpy as np

from nin_common.arch.weights import Weights, read_arrays

TRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trained")
INDEX = os.path.join(TRAINED_DIR, "index.json")
# the constructor arguments trained weights fix: NiN's argument -> the metadata key holding the value
FIXED = {"variant": "variant", "num_classes": "num_classes", "in_channels": "in_channels",
         "image_size": "image_size", "init": "init"}


def _index() -> Dict[str, dict]:
    with open(INDEX, encoding="utf-8") as f:
        return json.load(f)


def names() -> Tuple[str, ...]:
    """The names ``weights=`` takes (besides None)."""
    return tuple(_index())


def check_name(name) -> str:
    known = names()
    if not isinstance(name, str) or name not in known:
        which = f"one of {', '.join(map(repr, known))}" if known else "None (no trained weights are installed)"
        raise ValueError(f"expected weights to be None or {which}, got {name!r}")
    return name


def metadata(name: str) -> dict:
    """Everything known about trained weights ``name`` (a copy): recipe, image_size, init, variant,
    num_classes, in_channels, test_accuracy, classes, preprocessing, trained_by, storage, file, sha256."""
    return dict(_index()[check_name(name)], name=name)


def path_of(name: str) -> str:
    return os.path.join(TRAINED_DIR, metadata(name)["file"])


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load(name: str) -> Weights:
    """The float32 canonical arrays of trained weights ``name``, after their file's sha256 is checked."""
    meta = metadata(name)
    path = path_of(name)
    if not os.path.isfile(path):
        raise ValueError(f"trained weights {name!r}: expected the file {path}, which is missing (reinstall nin)")
    got = sha256_file(path)
    if got != meta["sha256"]:
        raise ValueError(f"trained weights {name!r}: expected {os.path.basename(path)} with sha256 "
                         f"{meta['sha256']}, got {got} (the file is damaged; reinstall nin)")
    arrays = read_arrays(path, f"the trained weights {name!r}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}


def resolve(name: Optional[str], **given) -> dict:
    """NiN's arguments ``FIXED`` by trained weights ``name``: each one given (not None) must equal the weights'
    value, else one line saying which argument expected what; the others are filled in from the metadata.
    With ``name`` None, ``given`` comes back unchanged."""
    if name is None:
        return dict(given)
    meta = metadata(name)
    out = dict(given)
    for arg, key in FIXED.items():
        want = meta[key]
        if given.get(arg) is not None and given[arg] != want:
            raise ValueError(f"weights={name!r} were trained with {arg}={want!r}; expected {arg} to be {want!r} "
                             f"or left out, got {given[arg]!r}")
        out[arg] = want
    return out


def store(path: str, weights: Weights, dtype: str) -> None:
    """Write ``weights`` as the canonical ``.npz`` of a shipped file, each array in ``dtype`` (float32 or
    float16), compressed; atomically."""
    from nin_common.util.files import atomic_path

    if dtype not in ("float32", "float16"):
        raise ValueError(f"expected a storage dtype float32 or float16, got {dtype!r}")
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **{k: np.asarray(v).astype(dtype) for k, v in weights.items()})


def write_index(entries: Dict[str, dict]) -> None:
    from nin_common.util.files import atomic_path

    with atomic_path(INDEX) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=2, sort_keys=True)
        f.write("\n")
