"""Everything the TensorFlow backend does to the process, in one place (``nin_tf/__init__`` imports this first).

``common.util.runtime.prepare("tensorflow")`` first: it loads the system's libstdc++ before TensorFlow does,
so that TensorFlow's own copies of libstdc++ functions cannot take the place of libstdc++'s in other
frameworks (MXNet crashed after TensorFlow without it; see that module).  TensorFlow's start-up chatter is
kept out of the way unless you set ``TF_CPP_MIN_LOG_LEVEL`` yourself.

* ``full_float32()``: what ``nin parity`` switches on (``parity.parity_mode``): no TF32 on a GPU.
* ``dtype_policy(name)``: Keras layers take their dtype from a process-wide policy when they are created; the
  float64 copies of ``nin parity`` are built under ``"float64"``, which is restored after, whatever happens.
  (The bf16 Trainer sets its layers' own policies instead, never the global one: ``training.compute_policy``.)
"""
import os

from common.util import runtime

runtime.prepare("tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from contextlib import contextmanager  # noqa: E402

import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402

# environment variables importing the backend sets (and why)
ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2 unless set: TensorFlow's start-up chatter out of the way"}


def full_float32() -> None:
    tf.config.experimental.enable_tensor_float_32_execution(False)


@contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to ``name`` for the block, and restored after."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)
