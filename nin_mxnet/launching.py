"""Deprecated: how MXNet's workers start is in ``nin_mxnet.distributed``; this name goes in the next release."""
import warnings

from .distributed import (ENGINE, LAUNCHER, ONE_PRECISION_PER_JOB, SERVERS_LOCAL,  # noqa: F401
                          environment_world, launch_plan, worker_environment)

warnings.warn("nin_mxnet.launching is deprecated: use nin_mxnet.distributed", DeprecationWarning, stacklevel=2)
