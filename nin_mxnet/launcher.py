"""Deprecated: ``python -m nin_mxnet.distributed`` (``nin_mxnet.distributed.launcher``) is MXNet's launcher made to
run on Python 3.9 and later; this name goes in the next release."""
import warnings

from .distributed import launcher as main

warnings.warn("nin_mxnet.launcher is deprecated: use python -m nin_mxnet.distributed "
              "(nin_mxnet.distributed.launcher)", DeprecationWarning, stacklevel=1 if __name__ == "__main__" else 2)

__all__ = ["main"]

if __name__ == "__main__":
    main()
