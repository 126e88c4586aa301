"""MXNet's own launcher, ``mxnet/tools/launch.py`` (with ``dmlc_tracker``), as shipped in the mxnet 1.9.1 wheel,
made to run on Python 3.9 and later: ``python -m nin_mxnet.launcher`` takes launch.py's arguments.

    python -m nin_mxnet.launcher -n 2 --launcher local python -m nin_common.cli train --backend mxnet --out runs/mx

WORKAROUND for a defect of dmlc_tracker in the mxnet 1.9.1 wheel (and every earlier one): its tracker waits on
its threads with ``threading.Thread.isAlive``, which Python 3.9 removed (``is_alive`` is the name since 2.6),
so launch.py stops with an AttributeError right after starting the scheduler.  Here ``Thread.isAlive`` is given
back as ``Thread.is_alive`` before launch.py runs, unchanged (``runpy``).

With ``--launcher local`` every process runs on this machine, so they meet on the loopback: the scheduler's
address is 127.0.0.1 (the tracker would otherwise pick this machine's outward address, and fails on a machine
without one) and every node binds to 127.0.0.1 (``DMLC_NODE_HOST``); ``--port P`` (ours, before launch.py's
arguments) puts the scheduler on port P instead of the first free port from 9091.
"""
from __future__ import annotations

import os
import re
import runpy
import sys
import threading
from typing import List, Optional

LOOPBACK = "127.0.0.1"


def _restore_is_alive() -> None:
    if not hasattr(threading.Thread, "isAlive"):  # removed in Python 3.9; dmlc_tracker (mxnet 1.9.1) calls it
        threading.Thread.isAlive = threading.Thread.is_alive


def _local(argv: List[str]) -> bool:
    for i, arg in enumerate(argv):
        if arg == "--launcher" and i + 1 < len(argv):
            return argv[i + 1] == "local"
        if arg.startswith("--launcher="):
            return arg.split("=", 1)[1] == "local"
        if not arg.startswith("-") and i and argv[i - 1] not in ("-n", "--num-workers", "-s", "--num-servers",
                                                               "-H", "--hostfile", "--sync-dst-dir"):
            break  # the command begins
    return False


def _on_loopback(port: Optional[int]) -> None:
    from dmlc_tracker import tracker

    tracker.get_host_ip = lambda host_ip=None: LOOPBACK
    os.environ["DMLC_NODE_HOST"] = LOOPBACK
    if port is not None:
        start = tracker.PSTracker.__init__

        def on_port(self, hostIP, cmd, port_=None, port_end=None, envs=None, **kwargs):
            start(self, hostIP, cmd, port=port, port_end=port + 1, envs=envs)

        tracker.PSTracker.__init__ = on_port


def _quiet_failures() -> None:
    """A process that ends badly raises, in the launcher's thread that started it, a RuntimeError whose message
    holds the whole environment: one line instead (none under ``nin train --workers``, which names the lost
    worker itself).  The others keep waiting for it (ps-lite has no timeout): stop the launcher."""
    default = threading.excepthook

    def hook(args):
        text = str(args.exc_value)
        if not (isinstance(args.exc_value, RuntimeError) and text.startswith("Get nonzero return code")):
            return default(args)
        if os.environ.get("NIN_LAUNCHED"):
            return None
        found = {k: re.search(p, text) for k, p in (("code", r"return code=(-?\d+)"),
                                                    ("role", r"'DMLC_ROLE': '(\w+)'"),
                                                    ("task", r"'DMLC_TASK_ID': '(\d+)'"))}
        code, role, task = (m.group(1) if m else "?" for m in found.values())
        sys.stderr.write(f"nin_mxnet.launcher: the {role} of task {task} ended with exit status {code}; the "
                         f"others wait for it: stop the launcher (Ctrl-C)\n")
        return None

    threading.excepthook = hook


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    port = None
    if argv[:1] == ["--port"] and len(argv) > 1:
        port, argv = int(argv[1]), argv[2:]
    _restore_is_alive()
    _quiet_failures()
    if _local(argv):
        _on_loopback(port)
    sys.argv = ["mxnet/tools/launch.py", *argv]
    runpy.run_module("mxnet.tools.launch", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
