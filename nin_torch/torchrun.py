"""Deprecated: ``python -m nin_torch.distributed`` (``nin_torch.distributed.torchrun``) is torchrun for
``nin train --workers``; this name goes in the next release."""
import sys
import warnings

from .distributed import torchrun as main

warnings.warn("nin_torch.torchrun is deprecated: use python -m nin_torch.distributed (nin_torch.distributed.torchrun)",
              DeprecationWarning, stacklevel=1 if __name__ == "__main__" else 2)

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
