"""Native PyTorch checkpoints: a ``state_dict`` file read back with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import torch

from common.engine import checkpoint as ck

from . import model as _model
from .model import NiN


def save_native(model: NiN, path) -> None:
    """Write ``model.state_dict()`` (and its description ``<path>.json``) atomically."""
    ck.save(_model, model, path, lambda m, tmp: torch.save(m.state_dict(), tmp))


def load_native(path, model: NiN = None) -> NiN:
    """Load a native checkpoint into ``model`` (or a new model built from its description); all or nothing."""
    return ck.load(_model, path, model,
                   lambda m, p: m.load_state_dict(torch.load(p, map_location="cpu", weights_only=True)),
                   (RuntimeError, KeyError))
