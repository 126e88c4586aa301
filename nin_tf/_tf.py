"""Import TensorFlow the way every module of ``nin_tf`` needs it (``nin_tf/__init__`` imports this first).

``common.util.runtime.prepare("tensorflow")`` first: it loads the system's libstdc++ before TensorFlow does,
so that TensorFlow's own copies of libstdc++ functions cannot take the place of libstdc++'s in other
frameworks (MXNet crashed after TensorFlow without it; see that module).  TensorFlow's start-up chatter is
kept out of the way unless you set ``TF_CPP_MIN_LOG_LEVEL`` yourself.
"""
import os

from common.util import runtime

runtime.prepare("tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402,F401
