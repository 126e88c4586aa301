"""NiN (D2L 8.3) in TensorFlow Keras: ``from nin_tf import NiN``.  Inputs are NHWC."""
from . import runtime  # noqa: F401,I001  (first: prepares the process for TensorFlow)
from .model import (BACKEND, DATA_FORMAT, NiN, export_weights, import_weights, layer_shapes, nin_block,
                    num_params, predict)
from .checkpoint import load_native, save_native
from .training import Trainer, fit

__all__ = ["BACKEND", "DATA_FORMAT", "NiN", "nin_block", "layer_shapes", "predict", "num_params",
           "export_weights", "import_weights", "save_native", "load_native", "Trainer", "fit"]
