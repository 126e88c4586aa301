"""Lazy access to the backend packages by name (common itself imports no framework)."""
from __future__ import annotations

import importlib
from types import ModuleType

BACKENDS = ("torch", "mxnet", "tf")
FRAMEWORK = {"torch": "PyTorch", "mxnet": "MXNet", "tf": "TensorFlow"}
DATA_FORMAT = {"torch": "NCHW", "mxnet": "NCHW", "tf": "NHWC"}
FRAMEWORK_MODULE = {"torch": "torch", "mxnet": "mxnet", "tf": "tensorflow"}


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


def framework_version(name: str) -> str:
    """'PyTorch 2.13.0' and the like: the framework behind backend ``name`` and its version (imports it)."""
    return f"{FRAMEWORK[name]} {importlib.import_module(FRAMEWORK_MODULE[name]).__version__}"
