"""Native MXNet checkpoints: ``save_parameters`` files read back with ``load_parameters``."""
from __future__ import annotations

from ._mx import mx
from common import checkpoint as ck
from common.files import atomic_path

from .model import BACKEND, NiN, export_weights, import_weights

SUFFIX = ck.NATIVE_SUFFIX[BACKEND]


def save_native(model: NiN, path) -> None:
    """Write ``model.save_parameters`` (and its description ``<path>.json``) atomically."""
    with atomic_path(path, SUFFIX) as tmp:
        model.save_parameters(tmp)
    ck.write_config(path, BACKEND, model.config.kwargs)


def load_native(path, model: NiN = None) -> NiN:
    """Load a native checkpoint into ``model`` (or a new model built from its description).

    Nothing in ``model`` changes unless the whole checkpoint fits it.
    """
    fresh = NiN(**ck.read_config(path)["model"])
    try:
        fresh.load_parameters(str(path), ctx=mx.cpu())
    except (mx.base.MXNetError, AssertionError, AttributeError) as err:
        raise ValueError(f"checkpoint {path} does not fit its own description: {err}") from err
    if model is None:
        return fresh
    import_weights(model, export_weights(fresh))
    return model
