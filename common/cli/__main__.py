"""``python -m common.cli``: the ``nin`` command."""
import sys

from common.cli import main

sys.exit(main())
