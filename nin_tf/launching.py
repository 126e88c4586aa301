"""Deprecated: how TensorFlow's workers start is in ``nin_tf.distributed``; this name goes in the next release."""
import warnings

from .distributed import (ENGINE, JOB, LAUNCHER, ONE_PRECISION_PER_JOB, environment_world,  # noqa: F401
                          launch_plan, worker_environment)

warnings.warn("nin_tf.launching is deprecated: use nin_tf.distributed", DeprecationWarning, stacklevel=2)
