"""Lazy access to the backend packages by name (common itself imports no framework)."""
from __future__ import annotations

import importlib
from types import ModuleType

BACKENDS = ("torch", "mxnet", "tf")
FRAMEWORK = {"torch": "PyTorch", "mxnet": "MXNet", "tf": "TensorFlow"}
DATA_FORMAT = {"torch": "NCHW", "mxnet": "NCHW", "tf": "NHWC"}


class BackendUnavailable(RuntimeError):
    """The framework behind a backend is not installed (or fails to import)."""


def load(name: str) -> ModuleType:
    """Import ``nin_<name>``; unknown names raise ValueError, missing frameworks BackendUnavailable."""
    if name not in BACKENDS:
        raise ValueError(f"expected a backend among {', '.join(BACKENDS)}, got {name!r}")
    try:
        return importlib.import_module(f"nin_{name}")
    except ImportError as err:
        raise BackendUnavailable(
            f"backend {name!r} needs {FRAMEWORK[name]}, which is not installed ({err}); "
            f"install it with: pip install 'nin[{name}]'") from err


def parse_list(text: str) -> list:
    """'torch,tf' or 'all' -> a list of backend names (checked)."""
    names = list(BACKENDS) if text == "all" else [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in BACKENDS:
            raise ValueError(f"expected backends among {', '.join(BACKENDS)} (or 'all'), got {name!r}")
    return names
