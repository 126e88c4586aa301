"""Everything the JAX backend does to the process, in one place.

* At import (``nin_jax/__init__`` imports this first): ``common.util.runtime.prepare("jax")``: the system's
  libstdc++ before any framework (see there).  No environment variable is set.
* ``x64()``: JAX computes in float64 only while its ``jax_enable_x64`` switch is on, and that switch is
  process-wide.  Float64 models (``nin parity``'s copies) run their functions inside this block, so it never
  leaks into other code (``model.precision_of``).
* ``full_float32()``: what ``nin parity`` switches on (``parity.parity_mode``): matrix products and
  convolutions at ``highest`` precision (on a GPU, XLA's default may use TF32 or bf16 passes).
"""
from common.util import runtime

runtime.prepare("jax")

import jax  # noqa: E402
from jax.experimental import enable_x64  # noqa: E402

ENVIRONMENT: dict = {}  # environment variables importing the backend sets (and why): none


def x64():
    """A block in which JAX computes in float64 (and only that block)."""
    return enable_x64()


def full_float32() -> None:
    jax.config.update("jax_default_matmul_precision", "highest")
