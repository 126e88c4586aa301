"""Native MXNet checkpoints: ``save_parameters`` files read back with ``load_parameters``."""
from __future__ import annotations

from .runtime import mx
from nin_common.engine import checkpoint as ck

from . import model as _model
from .model import NiN


def save_native(model: NiN, path) -> None:
    """Write ``model.save_parameters`` (and its description ``<path>.json``) atomically."""
    ck.save(_model, model, path, lambda m, tmp: m.save_parameters(tmp))


def load_native(path, model: NiN = None) -> NiN:
    """Load a native checkpoint into ``model`` (or a new model built from its description); all or nothing."""
    return ck.load(_model, path, model, lambda m, p: m.load_parameters(p, ctx=mx.cpu()),
                   (mx.base.MXNetError, ValueError, AssertionError, AttributeError, OSError))
