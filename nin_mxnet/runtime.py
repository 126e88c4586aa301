"""Everything the MXNet backend does to the process, in one place: MXNet imported the way the chapter uses it.

``nin_common.util.runtime.prepare("mxnet")`` first: MXNet 1.9.1 (the last release; Apache retired the project)
refers to ``numpy.bool``, which numpy 1.24-1.26 removed, and crashes when TensorFlow loaded libstdc++ before
it (both explained there; the installed import hook does the same for any ``import mxnet``).  Then switch on
the NumPy interface (``npx.set_np()``) as the chapter and d2l do.

Threads: unless ``OMP_NUM_THREADS`` is set, MXNet on x86 runs its operators (oneDNN convolutions included)
on HALF the logical CPUs, assuming two hyper-threads per core; on a machine without hyper-threading, such as
a 2-vCPU cloud VM, one core then idles (measured on a 2-core EPYC: the network's convolutions run 1.8x
faster, forward and backward, on both cores).  So when you have not set ``OMP_NUM_THREADS``, it is set to the physical cores this process
may use (what PyTorch uses by default) for the moment MXNet is imported, and removed again: your environment, and the frameworks imported later,
see no change.  This only works when ``nin_mxnet`` imports MXNet first in the process.

``full_float32()``: what ``nin parity`` switches on (``parity.parity_mode``): no Tensor Core (TF32 or float16)
math in cuBLAS or cuDNN.  MXNet reads these variables once per process, when its first GPU operator runs, so
they are set in the environment, before any GPU work; ``NVIDIA_TF32_OVERRIDE=0`` is the CUDA libraries' own
switch.
"""
import os

from nin_common.util import runtime
from nin_common.util.machine import physical_cores

runtime.prepare("mxnet")

_SET_THREADS = "OMP_NUM_THREADS" not in os.environ
if _SET_THREADS:
    os.environ["OMP_NUM_THREADS"] = str(physical_cores())
try:
    import mxnet as mx  # noqa: E402
finally:
    if _SET_THREADS:
        del os.environ["OMP_NUM_THREADS"]
from mxnet import npx  # noqa: E402

npx.set_np()

ENVIRONMENT: dict = {}  # environment variables importing the backend leaves set: none (OMP_NUM_THREADS is put back)
PARITY_ENVIRONMENT = {"MXNET_CUDA_ALLOW_TENSOR_CORE": "0", "MXNET_CUDA_TENSOR_OP_MATH_ALLOW_CONVERSION": "0",
                      "NVIDIA_TF32_OVERRIDE": "0"}


def full_float32() -> None:
    os.environ.update(PARITY_ENVIRONMENT)


def array(x, ctx=None):
    """A NumPy array as an MXNet array of the kind the current mode uses."""
    ctx = ctx or mx.cpu()
    return mx.np.array(x, ctx=ctx) if mx.util.is_np_array() else mx.nd.array(x, ctx=ctx)
