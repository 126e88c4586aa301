"""The machine a run happens on (framework-free): CPU features, thread settings, memory, a description.

Thread settings are environment variables that the OpenMP runtimes read when a framework is imported, so
``thread_defaults()`` must run before the first framework import; the ``nin`` command and the benchmark
scripts call it, the library never does (importing ``nin_torch`` leaves your environment alone).
"""
from __future__ import annotations

import os
import platform
import subprocess
from typing import Dict, FrozenSet, Optional

# OMP_WAIT_POLICY=PASSIVE: OpenMP threads sleep between parallel regions instead of spinning.  On a CPU
# shared with other work, spinning threads steal the cores the computing ones need (torch ran 2x faster
# with PASSIVE on a loaded 2-core machine); on an idle machine the cost is a few microseconds per region.
THREAD_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "KMP_BLOCKTIME", "CUDA_VISIBLE_DEVICES")
# CPU instructions that make bf16 convolutions faster than fp32 (oneDNN uses them); without them the
# frameworks emulate bf16 and it is many times slower than fp32 (15x on an AVX2 EPYC, measured)
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def thread_defaults() -> Dict[str, str]:
    """Set the documented thread settings where the user set none; returns the ones it set."""
    chosen = {k: v for k, v in THREAD_DEFAULTS.items() if k not in os.environ}
    os.environ.update(chosen)
    return chosen


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


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (what the OS counted, frameworks included)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if platform.system() == "Darwin" else 2**10)  # bytes on macOS, KiB on Linux


def load_average() -> Optional[list]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def describe() -> dict:
    """The machine, for results files: host, system, CPU, core count, load average, thread settings."""
    return dict(host=platform.node(), system=platform.platform(), python=platform.python_version(), cpu=cpu_name(),
                cpu_count=os.cpu_count(), cpu_bf16=cpu_bf16(), load_avg=load_average(),
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
