"""Native PyTorch checkpoints: a ``state_dict`` file read back with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import pickle
import warnings
import zipfile

import torch

from nin_common.engine import checkpoint as ck

from . import model as _model
from .model import BACKEND, NiN

# what torch.load raises for a file it cannot read: empty, truncated or damaged (EOFError, RuntimeError from
# its zip reader), or a pickle holding more than tensors (UnpicklingError under weights_only=True)
READ_ERRORS = (pickle.UnpicklingError, EOFError, RuntimeError, OSError, ValueError, KeyError, TypeError,
               AttributeError, IndexError, UnicodeDecodeError, zipfile.BadZipFile)


def read(path, map_location="cpu", what: str = ""):
    """``torch.load(path, weights_only=True)``; a file it cannot read is a ValueError naming it (torch's own
    message, with its advice to retry with ``weights_only=False``, is never shown: nin never unpickles code)."""
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol of a damaged file: the error says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except READ_ERRORS as err:
        pickled = isinstance(err, pickle.UnpicklingError)
        raise ck.unreadable(path, BACKEND, "it holds Python objects, not only tensors" if pickled else err,
                            what) from None


def save_native(model: NiN, path) -> None:
    """Write ``model.state_dict()`` (and its description ``<path>.json``) atomically."""
    ck.save(_model, model, path, lambda m, tmp: torch.save(m.state_dict(), tmp))


def load_native(path, model: NiN = None) -> NiN:
    """Load a native checkpoint into ``model`` (or a new model built from its description); all or nothing."""
    return ck.load(_model, path, model, lambda m, p: m.load_state_dict(read(p)), (RuntimeError, KeyError))
