"""Everything the JAX backend does to the process, in one place.

* At import (``nin_jax/__init__`` imports this first): ``nin_common.util.runtime.prepare("jax")``: the system's
  libstdc++ before any framework (see there), and ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` unless you set it
  (``ENVIRONMENT`` says why).
* ``SYNC_DISPATCH_ENV``, read at import, never set: with it set to ``1``, JAX's CPU client runs each operation
  before the call returns, instead of queueing it and returning at once (asynchronous dispatch).  ``nin
  resources --measure`` starts its measuring process with it (``resources.MEASURE_ENV``): with asynchronous
  dispatch, an eagerly run prediction queues operations ahead of the ones computing, every queued operation
  holds its inputs and output, and how far ahead Python gets depends on the load of the machine.  So the
  measured peak depended on the load: 19.6 MiB alone and up to 25.8 MiB with two busy processes beside it,
  against 19.8 MiB analytic (99x99, batch 32).  JAX reads its ``jax_cpu_enable_async_dispatch`` flag only
  when it creates the CPU client, and from no environment variable, hence this one.
* ``x64()``: JAX computes in float64 only while its ``jax_enable_x64`` switch is on, and that switch is
  process-wide.  Float64 models (``nin parity``'s copies) run their functions inside this block, so it never
  leaks into other code (``model.precision_of``).
* ``full_float32()``: what ``nin parity`` switches on (``parity.parity_mode``): matrix products and
  convolutions at ``highest`` precision (on a GPU, XLA's default may use TF32 or bf16 passes).
"""
import os

from nin_common.util import runtime

runtime.prepare("jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

if hasattr(jax, "enable_x64"):  # jax 0.8 and later: the option's own context manager (jax.experimental lost its)
    def _enable_x64():
        return jax.enable_x64(True)
else:  # jax 0.5-0.7
    from jax.experimental import enable_x64 as _enable_x64

# environment variables importing the backend sets (and why)
ENVIRONMENT = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false unless set: on a GPU, JAX takes 75 % of its memory when a "
                                                "process first computes there, so a second process on the same GPU "
                                                "(a data-parallel worker, a parallel test, nin resources' measuring "
                                                "process) fails to start; JAX allocates as it needs instead. Read "
                                                "when JAX first creates its GPU client"}

SYNC_DISPATCH_ENV = "NIN_JAX_CPU_SYNC_DISPATCH"
if os.environ.get(SYNC_DISPATCH_ENV) == "1":
    jax.config.update("jax_cpu_enable_async_dispatch", False)


def sync_dispatch() -> bool:
    """Whether JAX's CPU client runs each operation before the call returns (``SYNC_DISPATCH_ENV``)."""
    return not jax.config.values["jax_cpu_enable_async_dispatch"]


def x64():
    """A block in which JAX computes in float64 (and only that block)."""
    return _enable_x64()


def full_float32() -> None:
    jax.config.update("jax_default_matmul_precision", "highest")
