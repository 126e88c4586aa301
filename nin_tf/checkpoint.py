"""Native Keras checkpoints: ``save_weights`` files (``.weights.h5``) read back with ``load_weights``."""
from __future__ import annotations

from nin_common.engine import checkpoint as ck

from . import model as _model
from .model import NiN


def save_native(model: NiN, path) -> None:
    """Write ``model.save_weights`` (and its description ``<path>.json``) atomically."""
    ck.save(_model, model, path, lambda m, tmp: m.save_weights(tmp))


def load_native(path, model: NiN = None) -> NiN:
    """Load a native checkpoint into ``model`` (or a new model built from its description); all or nothing."""
    return ck.load(_model, path, model, lambda m, p: m.load_weights(p), (ValueError, KeyError, OSError))
