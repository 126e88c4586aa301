"""``python -m nin_common.cli``: the ``nin`` command."""
import sys

from nin_common.cli import main

sys.exit(main())
