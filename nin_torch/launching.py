"""Deprecated: how PyTorch's workers start is in ``nin_torch.distributed``; this name goes in the next release."""
import warnings

from .distributed import (ENGINE, LAUNCHER, ONE_PRECISION_PER_JOB, environment_world,  # noqa: F401
                          launch_plan, worker_environment)

warnings.warn("nin_torch.launching is deprecated: use nin_torch.distributed", DeprecationWarning, stacklevel=2)
