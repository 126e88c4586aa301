"""Resource usage of a NiN (exercise 4): the analytic counts of ``nin_common.arch.costs`` checked against what each
backend measures (``nin_common.engine.measure``), each measurement in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from nin_common.arch.costs import check_options
from nin_common.engine import registry
from nin_common.engine.measure import Measured


def relative_error(measured: int, analytic: int) -> float:
    return abs(measured - analytic) / analytic


def measure_in_subprocess(backend: str, model_kwargs: dict, batch_size: int, image_size: int,
                          optimizer: str = "sgd", timeout: float = 1800) -> Measured:
    """``nin_<backend>.resources.measured_memory`` for ``NiN(**model_kwargs)`` in a fresh Python process.

    The process starts with the backend's ``resources.MEASURE_ENV`` (glibc reads ``RSS_ENV`` only when a
    process starts) and without the allocations and profiler state of this one.
    """
    from nin_common.engine import registry

    check_options(batch_size, optimizer)
    request = dict(backend=backend, batch_size=batch_size, image_size=image_size, optimizer=optimizer,
                   model=model_kwargs)
    env = dict(os.environ, **getattr(registry.part(backend, "resources"), "MEASURE_ENV", {}))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    res = subprocess.run([sys.executable, "-c", "from nin_common.tools.resources import _worker; _worker()",
                          json.dumps(request)], capture_output=True, text=True, env=env, timeout=timeout)
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"measuring {backend} failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")
    fields = json.loads(lines[-1])
    return Measured(**{k: fields[k] for k in Measured.__dataclass_fields__})


def _worker() -> None:  # pragma: no cover - runs in the subprocess
    request = json.loads(sys.argv[-1])
    backend = registry.load(request["backend"])
    measuring = registry.part(request["backend"], "resources")
    model = backend.NiN(**request["model"])
    measured = measuring.measured_memory(model, request["batch_size"], request["image_size"], request["optimizer"])
    print(json.dumps(measured.as_dict()))

