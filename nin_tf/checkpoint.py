"""Native Keras checkpoints: ``save_weights`` files (``.weights.h5``) read back with ``load_weights``."""
from __future__ import annotations

from common import checkpoint as ck
from common.files import atomic_path

from .model import BACKEND, NiN, export_weights, import_weights

SUFFIX = ck.NATIVE_SUFFIX[BACKEND]


def save_native(model: NiN, path) -> None:
    """Write ``model.save_weights`` (and its description ``<path>.json``) atomically."""
    with atomic_path(path, SUFFIX) as tmp:
        model.save_weights(tmp)
    ck.write_config(path, BACKEND, model.config.kwargs)


def load_native(path, model: NiN = None) -> NiN:
    """Load a native checkpoint into ``model`` (or a new model built from its description).

    Nothing in ``model`` changes unless the whole checkpoint fits it.
    """
    fresh = NiN(**ck.read_config(path)["model"])
    try:
        fresh.load_weights(str(path))
    except (ValueError, KeyError, OSError) as err:
        raise ValueError(f"checkpoint {path} does not fit its own description: {err}") from err
    if model is None:
        return fresh
    import_weights(model, export_weights(fresh))
    return model
