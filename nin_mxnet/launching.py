"""How MXNet's data-parallel workers start: MXNet's own launcher (``mxnet/tools/launch.py``, through
``nin_mxnet.launcher``) and its ``DMLC_*`` variables.  Framework-free (``nin_common.engine.contract.LaunchingModule``):
the process that launches the workers never imports MXNet."""
from __future__ import annotations

import os
import shlex
from typing import Dict, List, Optional

from nin_common.engine import distributed as D
from nin_common.engine.launch import Process

ENGINE = "MXNet kvstore dist_sync (ps-lite over TCP)"
LAUNCHER = "python -m nin_mxnet.launcher -n N --launcher local (mxnet/tools/launch.py)"
SERVERS_LOCAL = 1  # parameter servers of a local launch (the gradients of 2 M parameters need no more)
# a dist kvstore key keeps the byte size it was first given ("The value size cannot be changed", kvstore_dist.h), and
# the Trainer's keys are the parameters' indices: a job steps in one precision (the parity check starts one per dtype)
ONE_PRECISION_PER_JOB = True
_joined: List[D.World] = []  # this process's World once the scheduler gave it a rank


def environment_world() -> Optional[D.World]:
    """The worker MXNet's launcher made this process (``DMLC_ROLE=worker``), or None.  Its rank is the one the
    scheduler assigned once it has joined (0 until then: ps-lite gives ranks in ``join``)."""
    role = os.environ.get("DMLC_ROLE")
    if not role:
        return None
    if role != "worker":  # a server or the scheduler: importing mxnet runs it, and ends the process
        from . import runtime  # noqa: F401
        raise ValueError(f"expected DMLC_ROLE=worker, server or scheduler, got {role!r}")
    if _joined:
        return _joined[0]
    size = D.optional_int(os.environ.get("DMLC_NUM_WORKER"))
    if size is None:
        raise ValueError("expected DMLC_NUM_WORKER with DMLC_ROLE=worker (MXNet's launcher sets both)")
    return D.World(size=size, rank=0, engine=ENGINE, coordinator=_scheduler())


def _scheduler() -> str:
    return f"{os.environ.get('DMLC_PS_ROOT_URI', '')}:{os.environ.get('DMLC_PS_ROOT_PORT', '')}"


def worker_environment(workers: int, rank: int, port: int) -> Dict[str, str]:
    """The variables MXNet's local launcher gives a worker of ``workers`` whose scheduler listens at
    127.0.0.1:port (``rank`` is not among them: the scheduler assigns it)."""
    return {"DMLC_ROLE": "worker", "DMLC_PS_ROOT_URI": "127.0.0.1", "DMLC_PS_ROOT_PORT": str(port),
            "DMLC_NUM_WORKER": str(workers), "DMLC_NUM_SERVER": str(SERVERS_LOCAL), "DMLC_NODE_HOST": "127.0.0.1"}


def launch_plan(workers: int, worker_argv: List[str], threads: int, port: Optional[int]) -> List[Process]:
    """MXNet's launcher on this machine (``--launcher local``): the scheduler at 127.0.0.1:port, one server, the
    workers; each runs ``worker_argv`` through bash (launch.py joins the words), so each word is quoted.  Every
    process gets ``threads`` OpenMP threads (MXNet's operators; the launcher passes its environment on)."""
    if port is None:
        port = D.free_port()
    else:
        D.check_port_free(port)
    interpreter = worker_argv[0]
    return [Process([interpreter, "-m", "nin_mxnet.launcher", "--port", str(port), "-n", str(workers),
                     "-s", str(SERVERS_LOCAL), "--launcher", "local", *[shlex.quote(w) for w in worker_argv]],
                    {"OMP_NUM_THREADS": str(threads)}, name="launcher")]
