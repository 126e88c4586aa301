"""The one place where backends are registered, and the only module of ``common`` that imports them.

Each backend is a package beside ``common`` (``nin_torch``, ``nin_mxnet``, ``nin_tf``, ``nin_jax``) with the same module
names (``model``, ``training``, ``checkpoint``, ``parity``, ``resources``; see ``nin_common.engine.contract`` and
docs/backends.md).  Everything else in ``common`` (the training loop, the tools, the CLI, the tests) asks this
module for a backend by name and never writes a package name itself.  Packages are imported lazily, on first
use, as in einops' ``_backends.py``: importing ``common`` imports no framework.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Dict, List, Tuple


@dataclass(frozen=True)
class Backend:
    name: str           # what users type: --backend torch
    package: str        # the Python package that implements it
    framework: str      # for people: "PyTorch"
    module: str         # the framework's import name (its version is reported with results)
    extra: str          # pip install 'nin[<extra>]' installs the framework
    data_format: str    # the layout its models take: "NCHW" or "NHWC"
    native_suffix: str  # the ending of its native weight files (save_native/load_native)


# The registry: one entry per backend, in the order tables and tests list them.
REGISTERED: Tuple[Backend, ...] = (
    Backend("torch", "nin_torch", "PyTorch", "torch", "torch", "NCHW", ".pt"),
    Backend("mxnet", "nin_mxnet", "MXNet", "mxnet", "mxnet", "NCHW", ".params"),
    Backend("tf", "nin_tf", "TensorFlow", "tensorflow", "tf", "NHWC", ".weights.h5"),
    Backend("jax", "nin_jax", "JAX", "jax", "jax", "NHWC", ".msgpack"),
)
INFO: Dict[str, Backend] = {b.name: b for b in REGISTERED}
BACKENDS: Tuple[str, ...] = tuple(INFO)
# the modules every backend package has (the contract's parts)
PARTS = ("model", "training", "checkpoint", "parity", "resources", "runtime", "distributed")


class BackendUnavailable(RuntimeError):
    """The framework behind a backend is not installed (or fails to import)."""


def info(name: str) -> Backend:
    """The registry entry of backend ``name``; an unknown name is a ValueError listing the known ones."""
    if name not in INFO:
        raise ValueError(f"expected a backend among {', '.join(BACKENDS)}, got {name!r}")
    return INFO[name]


def framework(name: str) -> str:
    """'PyTorch', 'MXNet', ... for backend ``name``."""
    return info(name).framework


def load(name: str) -> ModuleType:
    """The backend package (``nin_<name>``); unknown names raise ValueError, missing frameworks
    BackendUnavailable naming the pip extra to install."""
    entry = info(name)
    try:
        return importlib.import_module(entry.package)
    except (ImportError, OSError) as err:  # OSError: a framework whose shared library fails to load
        raise _unavailable(entry, err) from err


def _unavailable(entry: Backend, err: Exception) -> BackendUnavailable:
    return BackendUnavailable(f"backend {entry.name!r} needs {entry.framework}, which is not installed or fails to "
                              f"import ({err}); install it with: pip install 'nin[{entry.extra}]'")


def part(name: str, part_name: str) -> ModuleType:
    """One module of a backend package: ``part("torch", "training")`` is ``nin_torch.training``."""
    if part_name not in PARTS:
        raise ValueError(f"expected a backend part among {', '.join(PARTS)}, got {part_name!r}")
    load(name)
    return importlib.import_module(f"{info(name).package}.{part_name}")


def available(name: str) -> None:
    """Whether the framework behind backend ``name`` is installed, without importing it (the process that only
    launches workers never does): BackendUnavailable naming the pip extra if not.  A framework that is installed
    but fails to import is reported where it is imported."""
    entry = info(name)
    if importlib.util.find_spec(entry.module) is None:
        raise BackendUnavailable(f"backend {name!r} needs {entry.framework}, which is not installed; install it "
                                 f"with: pip install 'nin[{entry.extra}]'")


def launching(name: str) -> ModuleType:
    """The backend's ``distributed`` module, for how its engine's workers start, loaded without importing the
    backend package, whose ``__init__`` imports the framework: the module imports ``common`` only (and the
    framework inside the functions a worker calls).  It is registered under its own name, so the package's
    modules, imported later, use this same module."""
    module = f"{info(name).package}.distributed"
    if module in sys.modules or info(name).package in sys.modules:
        try:
            return importlib.import_module(module)
        except (ImportError, OSError) as err:
            raise _unavailable(info(name), err) from err
    package = importlib.util.find_spec(info(name).package)
    if package is None or not package.submodule_search_locations:
        raise BackendUnavailable(f"backend {name!r}: its package {info(name).package} is not installed")
    path = os.path.join(list(package.submodule_search_locations)[0], "distributed.py")
    spec = importlib.util.spec_from_file_location(module, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[module]
        raise
    return loaded


def installed() -> List[str]:
    """The registered backends whose framework is installed here (found without importing it), in registry order."""
    return [entry.name for entry in REGISTERED if importlib.util.find_spec(entry.module) is not None]


def parse_list(text: str) -> List[str]:
    """'torch', 'torch,tf' or 'all' -> a list of backend names (checked, in the order given).  'all' is every
    registered backend whose framework is installed (every registered one where none is, so that loading them
    names what to install); a backend named explicitly is kept, installed or not."""
    if text.strip() == "all":
        return installed() or list(BACKENDS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError(f"expected backends among {', '.join(BACKENDS)} (or 'all'), got {text!r}")
    for name in names:
        if name not in INFO:
            raise ValueError(f"expected backends among {', '.join(BACKENDS)} (or 'all'), got {name!r}")
    return list(dict.fromkeys(names))


def of_suffix(path: str) -> str:
    """The backend whose native files end like ``path``; ValueError when none does."""
    for entry in REGISTERED:
        if path.endswith(entry.native_suffix):
            return entry.name
    raise ValueError(f"expected a checkpoint ending in one of "
                     f"{', '.join(e.native_suffix for e in REGISTERED)}, got {path}")


def framework_version(name: str) -> str:
    """'PyTorch 2.13.0' and the like: the framework behind backend ``name`` and its version (imports it)."""
    load(name)
    return f"{framework(name)} {importlib.import_module(info(name).module).__version__}"
