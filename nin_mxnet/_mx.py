"""Import MXNet the way the chapter uses it.

MXNet 1.9.1 (the last release; Apache retired the project) refers to ``numpy.bool``, which
numpy 1.24-1.26 removed: restore the alias before the import.  Then switch on the NumPy
interface (``npx.set_np()``) as the chapter and d2l do.
"""
import numpy

if "bool" not in numpy.__dict__:  # hasattr() would warn on numpy 1.24-1.26
    numpy.bool = numpy.bool_

import mxnet as mx  # noqa: E402
from mxnet import npx  # noqa: E402

npx.set_np()


def array(x, ctx=None):
    """A NumPy array as an MXNet array of the kind the current mode uses."""
    ctx = ctx or mx.cpu()
    return mx.np.array(x, ctx=ctx) if mx.util.is_np_array() else mx.nd.array(x, ctx=ctx)
