"""Deprecated: how JAX's workers start is in ``nin_jax.distributed``; this name goes in the next release."""
import warnings

from .distributed import (ADDRESS, COUNT, ENGINE, ID, LAUNCHER, ONE_PRECISION_PER_JOB,  # noqa: F401
                          environment_world, launch_plan, worker_environment)

warnings.warn("nin_jax.launching is deprecated: use nin_jax.distributed", DeprecationWarning, stacklevel=2)
