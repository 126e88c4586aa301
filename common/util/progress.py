"""Progress bars that show where someone watches: a terminal or a notebook, never a redirected log.

tqdm writes a frame per refresh with a carriage return; in a file or a pipe (``nin train ... > log``) those frames
pile up as junk, so a bar is only drawn when stderr is a terminal or the code runs in a Jupyter kernel, where
``tqdm.auto`` draws a notebook widget instead of text.
"""
from __future__ import annotations

import sys


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython's kernel app is configured), as ``tqdm.autonotebook`` asks."""
    ipython = sys.modules.get("IPython")
    try:
        return ipython is not None and "IPKernelApp" in ipython.get_ipython().config
    except AttributeError:  # IPython imported but no shell running
        return False


def shown(progress: bool) -> bool:
    """Whether a bar asked for (``progress``) is drawn: only on a terminal or in a notebook."""
    return bool(progress) and (in_notebook() or sys.stderr.isatty())


def bar(progress: bool, **kwargs):
    """A ``tqdm.auto`` bar (a widget in notebooks, text on a terminal), disabled where it would not be seen."""
    from tqdm.auto import tqdm

    return tqdm(disable=not shown(progress), **kwargs)
