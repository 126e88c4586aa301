"""The machine a run happens on (framework-free): CPU features, thread settings, memory, a description.

Thread settings are environment variables that the OpenMP runtimes read when a framework is imported, so
``thread_defaults()`` must run before the first framework import; the ``nin`` command and the benchmark
scripts call it, the library never does (importing ``nin_torch`` leaves your environment alone).

``keep_freed_memory()`` is the one process-wide setting the library makes, when a ``Trainer`` is built (opt
out with ``NIN_KEEP_FREED_MEMORY=0``): glibc's malloc serves every block over 32 MiB with a fresh ``mmap`` and
gives it back on free, so each training step page-faults its activations in anew (about 140 MiB per layer
at batch 128 and 224 px).  PyTorch and TensorFlow allocate CPU tensors with malloc, and train faster with it
(docs/speed.md).  The cost: the process keeps its peak resident memory until it exits, instead of returning it
between steps.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import subprocess
from typing import Dict, FrozenSet, Optional

# OMP_WAIT_POLICY=PASSIVE: OpenMP threads sleep between parallel regions instead of spinning.  On a CPU
# shared with other work, spinning threads steal the cores the computing ones need; on an idle machine
# sleeping costs a little (docs/speed.md gives both).
THREAD_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "KMP_BLOCKTIME", "CUDA_VISIBLE_DEVICES",
                    "NIN_KEEP_FREED_MEMORY")
# CPU instructions that make bf16 convolutions faster than fp32 (oneDNN uses them); without them the
# frameworks emulate bf16 and it is many times slower than fp32 (docs/speed.md)
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
VECTOR_FLAGS = ("avx", "fma", "amx")  # the prefixes of the flags results files record (vector_flags)


def thread_defaults() -> Dict[str, str]:
    """Set the documented thread settings where the user set none; returns the ones it set."""
    chosen = {k: v for k, v in THREAD_DEFAULTS.items() if k not in os.environ}
    os.environ.update(chosen)
    return chosen


def available_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def physical_cores(cpuinfo: str = "/proc/cpuinfo", allowed=None) -> int:
    """Physical cores among the CPUs this process may use (hyper-threads counted once), from ``cpuinfo``;
    ``available_cpus()`` where that file says nothing about cores.  ``allowed``: CPU numbers (default: this
    process's affinity)."""
    if allowed is None and hasattr(os, "sched_getaffinity"):
        allowed = os.sched_getaffinity(0)
    cores, cpu, fields = set(), None, {}
    try:
        with open(cpuinfo) as f:
            for line in list(f) + [""]:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "processor":
                    cpu, fields = int(value), {}
                elif key in ("physical id", "core id"):
                    fields[key] = value.strip()
                elif not key and cpu is not None:  # a blank line ends a processor's section
                    if (allowed is None or cpu in allowed) and len(fields) == 2:
                        cores.add((fields["physical id"], fields["core id"]))
                    cpu = None
    except OSError:
        pass
    return len(cores) or available_cpus()


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
INT_MAX = 2**31 - 1
_kept_freed_memory: Optional[bool] = None


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (see the module's docstring); True where it took effect.

    Sets ``M_MMAP_MAX=0`` (large blocks come from the heap, not from ``mmap``) and ``M_TRIM_THRESHOLD`` to its
    maximum (free memory stays in the process).  A no-op returning False without glibc, or when the
    environment has ``NIN_KEEP_FREED_MEMORY=0``.  Safe to call any number of times.
    """
    global _kept_freed_memory
    if os.environ.get("NIN_KEEP_FREED_MEMORY", "1").strip() == "0":
        return False
    if _kept_freed_memory is None:
        _kept_freed_memory = False
        name = ctypes.util.find_library("c")
        if name and platform.libc_ver()[0] == "glibc":
            mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
            if mallopt is not None:
                _kept_freed_memory = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1
    return _kept_freed_memory


def cpu_flags() -> FrozenSet[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX), i.e. bf16 can be faster than fp32."""
    return bool(BF16_FLAGS & cpu_flags())


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def cpu_generation() -> str:
    """'family 25 model 1' from /proc/cpuinfo ('' where it says nothing): which generation a CPU name covers
    (an "AMD EPYC" is Zen 3 at family 25 model 1, Zen 4 at model 17)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("cpu family", "model") and key.strip() not in fields:
                    fields[key.strip()] = value.strip()
                if not line.strip():
                    break
    except OSError:
        pass
    return f"family {fields['cpu family']} model {fields['model']}" if len(fields) == 2 else ""


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (what the OS counted, frameworks included)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if platform.system() == "Darwin" else 2**10)  # bytes on macOS, KiB on Linux


def _status_mb(field: str) -> Optional[float]:
    """A memory figure of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB; None where there is no such file."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb() -> Optional[float]:
    """This process's resident memory now, in MiB (Linux; None elsewhere)."""
    return _status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Restart the count of this process's peak resident memory from its resident memory now (Linux's
    ``/proc/self/clear_refs``), so ``peak_rss_since_reset_mb`` gives the peak of what runs next; False where
    the system has no such control (the count then goes on from the process's start)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset_mb() -> Optional[float]:
    """This process's peak resident memory since ``reset_peak_rss`` (or its start), in MiB (Linux's ``VmHWM``;
    None elsewhere)."""
    return _status_mb("VmHWM")


def load_average() -> Optional[list]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_mhz() -> Optional[float]:
    """The clock /proc/cpuinfo reports for the first core (a VM's nominal figure; None where it says none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(float(line.split(":", 1)[1]) for line in f if line.startswith("cpu MHz"))
    except (OSError, StopIteration, ValueError):
        return None


def nominal_fp32_peak() -> Optional[dict]:
    """The cores' nominal float32 peak: cores x 2 FMA units x lanes x 2 FLOP x the clock /proc/cpuinfo reports; with
    what it assumed.  Lanes are the fp32 lanes an FMA unit computes per cycle: 16 with AVX-512, 8 with AVX2, and 8
    on AMD family 25 (Zen 4), which runs AVX-512 instructions through 256-bit units in two halves.  Two FMA units
    per core is the assumption (Zen 3-4, Intel server cores); None where the clock or vector width is unknown."""
    flags, mhz, cores = cpu_flags(), cpu_mhz(), os.cpu_count()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags and "fma" in flags else None
    if lanes == 16 and cpu_generation().startswith("family 25 "):
        lanes = 8
    if not (mhz and lanes and cores):
        return None
    gflops = cores * 2 * lanes * 2 * mhz / 1000
    return dict(gflops=round(gflops, 1), formula=f"{cores} cores x 2 FMA units x {lanes} fp32 lanes x 2 FLOP x "
                                                 f"{mhz / 1000:.3f} GHz (/proc/cpuinfo)")


def vector_flags() -> list:
    """The CPU flags that say which vector instructions oneDNN and XLA can use (AVX, AVX2, AVX-512, FMA, AMX)."""
    return sorted(f for f in cpu_flags() if f.startswith(VECTOR_FLAGS))


def describe() -> dict:
    """The machine, for results files: host, system, CPU and its vector flags, core count, load average, thread
    settings."""
    return dict(host=platform.node(), system=platform.platform(), python=platform.python_version(), cpu=cpu_name(),
                cpu_generation=cpu_generation(), cpu_flags=vector_flags(), cpu_count=os.cpu_count(),
                cpu_bf16=cpu_bf16(), load_avg=load_average(),
                keep_freed_memory=bool(_kept_freed_memory),
                env={k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ})


def git_commit(folder: str) -> str:
    """The short commit of the checkout holding ``folder``, with ``-dirty`` when it has changes ('' outside git)."""
    def git(*args) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD")
        return head + ("-dirty" if head and git("status", "--porcelain", "--", ".") else "")
    except (OSError, subprocess.SubprocessError):
        return ""
