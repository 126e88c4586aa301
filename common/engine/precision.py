"""Devices and precisions: what ``--device`` and ``--precision`` resolve to, the same in every backend."""
from __future__ import annotations

from typing import Optional

from nin_common.engine import registry
from nin_common.util.values import check_choice

DEVICES = ("auto", "cpu", "gpu")
# "fp32": everything in float32.  "bf16": mixed precision, bfloat16 compute with float32 master weights (the
# optimizer updates float32 weights; losses and metrics in float32).  "auto": bf16 where the device computes
# it natively (a GPU with bf16 tensor cores, a CPU with AVX512-BF16/AMX), else fp32.
PRECISIONS = ("auto", "fp32", "bf16")


def choose_device(requested: str, gpus: int, backend: str) -> str:
    """``"gpu"`` or ``"cpu"`` for ``--device auto|cpu|gpu``, given how many GPUs the framework sees."""
    check_choice("device", requested, DEVICES)
    if requested == "gpu" and gpus < 1:
        raise ValueError(f"--device gpu: {registry.framework(backend)} sees no GPU (no GPU, no driver, or a "
                         f"CPU-only build of the framework); use --device cpu or --device auto")
    return "gpu" if requested != "cpu" and gpus > 0 else "cpu"


def check_precision(precision: str) -> str:
    return check_choice("precision", precision, PRECISIONS)


def resolve_precision(precision: str, bf16_native: bool, backend: str, bf16_why_not: Optional[str] = None) -> str:
    """``"fp32"`` or ``"bf16"`` for a requested precision: ``auto`` is bf16 where ``bf16_native`` (the device
    computes bf16 faster than fp32), else fp32.  ``bf16_why_not``: the backend cannot train in bf16 at all
    (asking for it is a ValueError saying why)."""
    check_precision(precision)
    if bf16_why_not is not None:
        if precision == "bf16":
            raise ValueError(f"precision bf16 is not available in {registry.framework(backend)}: {bf16_why_not}; "
                             f"use fp32")
        return "fp32"
    if precision == "auto":
        return "bf16" if bf16_native else "fp32"
    return precision

