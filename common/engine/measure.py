"""Measuring a backend's memory with its framework's own allocator statistics: the windows every backend
measures the same way (``run_measurement``) and what they give (``Measured``).  Each backend's
``resources.measured_memory`` supplies the framework's allocator and steps; ``nin_common.tools.resources``
compares the result with ``nin_common.arch.costs``."""
from __future__ import annotations

import gc
import os
from dataclasses import asdict, dataclass
from typing import Callable, Tuple


@dataclass(frozen=True)
class Measured:
    """Memory one backend measured with its framework's own allocator statistics (bytes).

    Three windows, each after an unmeasured warm-up step and prediction: the level the
    allocator holds at the end of a training forward pass (loss computed, everything the
    backward pass needs recorded), its peak over a whole training step (forward, backward,
    update), and its peak over a prediction.  Levels and peaks are above the allocator's level
    when the window opens, so parameters, the optimizer state (created by the warm-up step) and
    the input batch, all allocated before, are added from the framework's tensors' sizes.
    """

    backend: str
    params: int
    grads: int  # one per parameter: allocated by the backward pass, or kept allocated (MXNet)
    state: int  # optimizer state, summed over the framework optimizer's buffers
    input: int
    forward_held: int
    step_peak: int
    predict_peak: int
    grads_kept: bool  # the framework keeps gradient buffers allocated between steps (MXNet)
    how: str  # which allocator statistic gave the numbers

    @property
    def kept(self) -> int:
        """Activations held when the backward pass starts, the input batch included (``activations_kept``)."""
        return self.input + self.forward_held

    @property
    def live(self) -> int:
        """Peak live activations of a prediction, the input batch included (``peak_activations``)."""
        return self.input + self.predict_peak

    @property
    def train(self) -> int:
        """Training memory as ``Memory.train`` counts it: held when the backward pass starts, plus gradients."""
        return self.params + self.grads + self.state + self.input + self.forward_held

    @property
    def step(self) -> int:
        """The peak over a whole training step, backward-pass temporaries included."""
        return self.params + self.state + self.input + (self.grads if self.grads_kept else 0) + self.step_peak

    @property
    def predict(self) -> int:
        return self.params + self.input + self.predict_peak

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(kept=self.kept, live=self.live, train=self.train, step=self.step, predict=self.predict)
        return out


def run_measurement(backend: str, allocation: Callable, begin_step: Callable, end_step: Callable,
                    predict: Callable, state: Callable[[], int], *, params: int, input_bytes: int, grads_kept: bool,
                    how: str) -> Measured:
    """The same windows in every backend.

    ``allocation(fn)`` runs ``fn()`` and returns (peak, level at the end), both in bytes above the
    allocator's level at the start; ``begin_step()`` runs a training forward pass and the loss,
    recorded for the backward pass, and returns what ``end_step(handle)`` needs for the backward
    pass and update; ``predict()`` runs a forward pass without gradients; ``state()`` sums the
    bytes of the optimizer's buffers.
    """
    def window(fn):
        gc.collect()  # tensors caught in reference cycles go now, not at a random moment inside the window
        return allocation(fn)

    end_step(begin_step())  # unmeasured: the optimizer's state and the libraries' caches come to exist
    predict()
    pending = []
    _, forward_held = window(lambda: pending.append(begin_step()))
    end_step(pending.pop())
    step_peak, _ = window(lambda: end_step(begin_step()))
    predict_peak, _ = window(predict)
    return Measured(backend, params, params, state(), input_bytes, forward_held, step_peak, predict_peak,
                    grads_kept, how)


# Measuring a process's resident memory (``rss_allocation``) needs glibc to map every block of 64 KiB or more
# on its own, so that a freed tensor leaves at once; glibc reads this only when a process starts.  A backend
# that measures this way sets ``MEASURE_ENV = RSS_ENV`` in its ``resources`` module (default: nothing), and
# ``nin resources --measure`` starts the measuring process with it.
RSS_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
RSS_HOW = "resident memory (/proc/self/status VmRSS, VmHWM), glibc mapping blocks of 64 KiB or more"


# ---------------------------------------------------------------- resident memory, for allocators without statistics

def _memory_status() -> dict:
    """VmRSS and VmHWM (peak resident) of this process in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def check_rss_environment(framework: str) -> None:
    """Raise RuntimeError unless this process can measure its resident memory (Linux, ``RSS_ENV`` set)."""
    missing = {k: v for k, v in RSS_ENV.items() if os.environ.get(k) != v}
    if missing or not os.path.exists("/proc/self/clear_refs"):
        setting = " ".join(f"{k}={v}" for k, v in RSS_ENV.items())
        raise RuntimeError(f"measuring {framework}'s memory needs Linux and a Python started with {setting} "
                           f"in the environment (nin resources --measure does that)")


def rss_allocation(fn) -> Tuple[int, int]:
    """(peak, level at the end) of this process's resident memory while ``fn()`` runs, above its start."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the kernel restarts the peak (VmHWM) from the current resident size
    start = _memory_status()["VmRSS"]
    fn()
    status = _memory_status()
    return max(0, status["VmHWM"] - start), status["VmRSS"] - start
