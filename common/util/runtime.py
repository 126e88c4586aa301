"""What the frameworks need before they are imported, in any order, in one process (framework-free).

Three defects of the frameworks' wheels, each fixed here before the framework's first import:

1. **TensorFlow before MXNet crashed the process** (``Segmentation fault: 11``, or ``random_device could not
   be read``).  ``libtensorflow_framework.so.2`` exports its own copies of ``std::random_device::_M_init``
   (new-ABI string) and ``_M_getval``, from the older libstdc++ it was built with, whose ``random_device``
   has another layout.  When TensorFlow is the first to load the system's ``libstdc++.so.6``, the dynamic
   linker resolves libstdc++'s own internal calls in TensorFlow's scope: libstdc++'s old-ABI
   ``random_device::_M_init(const std::string&)`` (the one MXNet 1.9.1, built with the old ABI, calls from
   a static constructor) then forwards to TensorFlow's ``_M_init``, which fills the object in the old layout,
   and MXNet's next call, to libstdc++'s own ``_M_getval``, reads a function pointer that was never written
   and jumps to it.  Fix: load ``libstdc++.so.6`` (with ``RTLD_NOW``, as ctypes does) before any framework,
   so that its symbols are bound to itself once and for all; a later TensorFlow then keeps its copies to
   itself.  (Seen with ``LD_DEBUG=bindings``: ``binding file libstdc++.so.6 to libtensorflow_framework.so.2:
   _ZNSt13random_device7_M_initERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE``.)

2. **``from mxnet import np`` fails on numpy 1.24-1.26** (``module 'numpy' has no attribute 'bool'``):
   MXNet 1.9.1, the last release, still uses ``numpy.bool``, which numpy 1.24 removed and numpy 2 brought
   back as the name of ``numpy.bool_`` (MXNet does not run on numpy 2).  Fix: ``numpy.bool = numpy.bool_``,
   numpy 2's own meaning, before MXNet is imported.

3. **MXNet's parameter server rounded float64 to float32** (WORKAROUND, MXNet 1.9.1 and earlier on glibc):
   ``KVStoreDistServer`` (``src/kvstore/kvstore_dist_server.h``) never initialises its ``multi_precision_``
   flag; only a command can set it true, none sets it false.  Its value is whatever the heap chunk the server
   object is allocated in held before, and where it reads true the server keeps float32 copies of float64
   values: a float64 sum of (1 + 2**-40) from two workers can come back as 3.0, its float32 rounding
   (float32 values are never affected: the flag only matters for other dtypes; docs/distributed.md).  Fix: a
   process started as a parameter server (``DMLC_ROLE=server``) re-executes itself once, before MXNet is
   imported, with glibc's heap tunables ``glibc.malloc.perturb=255`` (every chunk malloc returns is zeroed) and
   ``glibc.malloc.tcache_count=0`` (no chunk skips that on the thread cache's fast path), so the flag reads
   false (``perturb`` alone did not always do it).  Servers only (workers keep
   the fast heap); ``nin_mxnet.distributed`` checks every server with a float64 sum when the workers join.

The package installs ``nin_runtime.pth`` into site-packages, which runs ``install()`` at interpreter start: a
``sys.meta_path`` entry that calls ``prepare(name)`` when ``torch``, ``tensorflow``, ``mxnet`` or ``jax`` is first
imported, whoever imports it (the chapter's own code, a user's ``import tensorflow``), and then lets Python
import it as usual.  That is all that runs at start-up: this module (``sys`` and nothing else), one entry on
``sys.meta_path``, one string comparison per import.  All three fixes serve MXNet, so ``prepare`` does nothing
at all in an environment where MXNet is not installed (looked up once, at the first framework's import).
``nin_torch``, ``nin_mxnet``, ``nin_tf`` and ``nin_jax`` call ``prepare`` themselves too, for a checkout used
without installing it.
"""
from __future__ import annotations

import sys

# ctypes is imported where it is used: this module is imported at every interpreter start (nin_runtime.pth)

FRAMEWORKS = ("torch", "tensorflow", "mxnet", "jax")  # libstdc++ goes first before any of these
LIBSTDCXX = "libstdc++.so.6"
_libstdcxx = None  # the ctypes.CDLL, once loaded
_mxnet_installed: bool | None = None  # looked up at the first prepare()


def mxnet_installed() -> bool:
    """Whether MXNet can be imported here (found without importing it; looked up once per process)."""
    global _mxnet_installed
    if _mxnet_installed is None:
        import importlib.util

        _mxnet_installed = False  # while looking: the lookup passes through the hook, which must not look again
        _mxnet_installed = "mxnet" in sys.modules or importlib.util.find_spec("mxnet") is not None
    return _mxnet_installed


def loaded_libraries() -> list[str]:
    """The paths of the shared objects in this process, in the order they were loaded (Linux; [] elsewhere)."""
    if not sys.platform.startswith("linux"):
        return []
    import ctypes

    class Info(ctypes.Structure):  # the start of struct dl_phdr_info (link.h)
        _fields_ = [("addr", ctypes.c_void_p), ("name", ctypes.c_char_p)]

    names: list[str] = []
    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(Info), ctypes.c_size_t, ctypes.c_void_p)(
        lambda info, size, data: names.append((info.contents.name or b"").decode(errors="replace")) or 0)
    ctypes.CDLL(None).dl_iterate_phdr(callback, None)
    return names


def libstdcxx_bound_by_tensorflow() -> bool:
    """Whether a TensorFlow library was loaded before ``libstdc++.so.6`` (so libstdc++'s internal calls were
    bound to TensorFlow's copies, and MXNet would crash)."""
    for name in loaded_libraries():
        if "/libstdc++.so" in name:
            return False
        if "tensorflow" in name:
            return True
    return False


def preload_libstdcxx() -> None:
    """Load the system's libstdc++ now, binding its symbols to itself (fix 1 above); a no-op where it is
    already loaded or where there is none (macOS, Windows, a static build)."""
    global _libstdcxx
    if _libstdcxx is None and sys.platform.startswith("linux"):
        import ctypes

        try:
            _libstdcxx = ctypes.CDLL(LIBSTDCXX)  # ctypes adds RTLD_NOW: every symbol bound here, now
        except OSError:
            pass


def numpy_bool_alias() -> None:
    """``numpy.bool`` as numpy 2 defines it (``numpy.bool_``), where this numpy lacks it (fix 2 above)."""
    import numpy

    if "bool" not in numpy.__dict__:  # hasattr() would warn on numpy 1.24-1.26
        numpy.bool = numpy.bool_


# fix 3: the heap tunables a parameter server is re-executed with, and the variable that says it was
SERVER_HEAP_TUNABLES = "glibc.malloc.perturb=255:glibc.malloc.tcache_count=0"
SERVER_HEAP_VARIABLE = "NIN_MXNET_SERVER_HEAP"


def zeroed_heap_for_mxnet_server() -> None:
    """In a process started as an MXNet parameter server, before MXNet is imported: re-execute this process
    (the same pid, interpreter and arguments) once with glibc's heap zeroing every chunk it returns (fix 3
    above).  Elsewhere (a worker, the scheduler, not glibc, already done) a no-op."""
    import os

    if os.environ.get("DMLC_ROLE") != "server" or os.environ.get(SERVER_HEAP_VARIABLE) == "1":
        return
    if not sys.platform.startswith("linux") or not _glibc():
        return
    env = dict(os.environ, **{SERVER_HEAP_VARIABLE: "1"})
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES", ""), SERVER_HEAP_TUNABLES]))
    argv = [sys.executable] + list(getattr(sys, "orig_argv", sys.argv)[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def _glibc() -> bool:
    import os

    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


class TensorFlowFirst(ImportError):
    """MXNet asked for after TensorFlow loaded libstdc++ (only without the installed hook)."""


def prepare(framework: str) -> None:
    """Run just before ``framework`` (``torch``, ``tensorflow``, ``mxnet``, ``jax``) is first imported; nothing
    where MXNet is not installed (every fix above serves MXNet)."""
    if not mxnet_installed():
        return
    if framework == "mxnet" and "mxnet" not in sys.modules:
        zeroed_heap_for_mxnet_server()
        if libstdcxx_bound_by_tensorflow():
            raise TensorFlowFirst(
                "expected MXNet to be imported before TensorFlow, or nin's import hook to be installed; got "
                "TensorFlow first without it, which would crash MXNet (see nin_common.util.runtime): "
                "reinstall nin (pip install -e .) or import mxnet/nin_mxnet before tensorflow")
        numpy_bool_alias()
    preload_libstdcxx()


class Hook:
    """A ``sys.meta_path`` finder that finds nothing: it calls ``prepare`` before a framework's first import."""

    def find_spec(self, fullname, path=None, target=None):
        if path is None and fullname in FRAMEWORKS:
            prepare(fullname)
        return None


def installed() -> bool:
    return any(isinstance(finder, Hook) for finder in sys.meta_path)


def install() -> None:
    """Put the hook first on ``sys.meta_path`` (once); ``nin_runtime.pth`` calls it at interpreter start."""
    if not installed():
        sys.meta_path.insert(0, Hook())
