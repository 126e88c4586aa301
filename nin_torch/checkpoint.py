"""Native PyTorch checkpoints: a ``state_dict`` file read back with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import torch

from common import checkpoint as ck
from common.files import atomic_path

from .model import BACKEND, NiN, export_weights, import_weights

SUFFIX = ck.NATIVE_SUFFIX[BACKEND]


def save_native(model: NiN, path) -> None:
    """Write ``model.state_dict()`` (and its description ``<path>.json``) atomically."""
    with atomic_path(path, SUFFIX) as tmp:
        torch.save(model.state_dict(), tmp)
    ck.write_config(path, BACKEND, model.config.kwargs)


def load_native(path, model: NiN = None) -> NiN:
    """Load a native checkpoint into ``model`` (or a new model built from its description).

    Nothing in ``model`` changes unless the whole checkpoint fits it.
    """
    fresh = NiN(**ck.read_config(path)["model"])
    try:
        fresh.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, KeyError) as err:
        raise ValueError(f"checkpoint {path} does not fit its own description: {err}") from err
    if model is None:
        return fresh
    import_weights(model, export_weights(fresh))
    return model
