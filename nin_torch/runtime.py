"""Everything the PyTorch backend does to the process, in one place.

* At import (``nin_torch/__init__`` imports this first): ``nin_common.util.runtime.prepare("torch")``, which loads
  the system's libstdc++ before any framework (see there: TensorFlow's copies of libstdc++ functions crashed
  MXNet otherwise).  Importing ``nin_torch`` sets no environment variable and changes no torch setting.
* ``full_float32()``: what ``nin parity`` switches on (``parity.parity_mode``): on a GPU, cuBLAS and cuDNN
  would otherwise run float32 matrix products and convolutions in TF32 (10-bit mantissa), far outside the
  float32 tolerances.  Process-wide, so only the parity command and tests call it.
"""
from nin_common.util import runtime

runtime.prepare("torch")

import torch  # noqa: E402

ENVIRONMENT: dict = {}  # environment variables importing the backend sets (and why): none


def full_float32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
