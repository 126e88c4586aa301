"""Data-parallel NiN in MXNet: the ``dist_sync`` kvstore (ps-lite), started by MXNet's own launcher.

How the idiom reads (MXNet's distributed training guide): ``mxnet/tools/launch.py -n N`` starts a scheduler, the
parameter servers (``-s``, N by default) and N workers, all running the same command; the roles and the
scheduler's address come in ``DMLC_*`` variables, and a process started as a server or the scheduler becomes
one when it imports mxnet.  Each worker creates ``mx.kv.create("dist_sync")`` (the scheduler assigns its rank)
and hands it to ``gluon.Trainer``; every step pushes each gradient to the servers, which sum the N workers'
pushes, and pulls the sum back (``update_on_kvstore=False``: the servers only sum; each worker applies the same
SGD update to its own copy of the weights, which the Trainer's first step broadcast from worker 0).  Each
worker's loss is its slice's summed cross-entropy over the global batch, so the sum is the gradient of the
global mean.  The metrics are summed through the kvstore too (a key of their own).

On Python 3.9 and later the launcher is run through ``launcher`` here (``python -m nin_mxnet.distributed``: a
workaround of a defect of its ``dmlc_tracker``, described there); the servers are started with a zeroed heap (``nin_common.util.runtime``, fix 3:
MXNet 1.9.1's server leaves a flag uninitialised that can make it round float64 to float32), and
``Group`` checks every server with a float64 sum before training.

Faults: ps-lite has no timeouts; a worker whose peer is gone waits.  ``nin train --workers`` watches every
worker and stops them all; joining is bounded by ``NIN_DIST_TIMEOUT`` here.

The module has three parts: how the workers start (``ENGINE`` to ``launch_plan``,
``nin_common.engine.contract.DistributedModule``), which the process that launches the workers reads without
importing MXNet (``nin_common.engine.registry.launching`` loads this file alone); what a worker does (``join``,
``Group``, ``sgd_steps``), which imports MXNet when called; and MXNet's launcher (``python -m
nin_mxnet.distributed``, below).
"""
from __future__ import annotations

import os
import re
import runpy
import shlex
import sys
import threading
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence

import numpy as np

from nin_common.engine import distributed as D
from nin_common.engine.launch import Process


# -------------------------------------------------------------- how the workers start (no MXNet)

ENGINE = "MXNet kvstore dist_sync (ps-lite over TCP)"
LAUNCHER = "python -m nin_mxnet.distributed -n N --launcher local (mxnet/tools/launch.py)"
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
    return [Process([interpreter, "-m", "nin_mxnet.distributed", "--port", str(port), "-n", str(workers),
                     "-s", str(SERVERS_LOCAL), "--launcher", "local", *[shlex.quote(w) for w in worker_argv]],
                    {"OMP_NUM_THREADS": str(threads)}, name="launcher")]


# -------------------------------------------------------------- a worker (imports MXNet)

# kvstore keys of our own, beside the Trainer's (0 .. parameters - 1): the metrics' sums, and the float64 check
METRICS_KEY = 1 << 20
PROBE_KEY = 1 << 21
PROBE = 1.0 + 2.0 ** -40  # a float64 that float32 cannot hold


class Group:
    """This worker in the kvstore (``nin_common.engine.distributed.Group``): the engine's sums, barrier and exit."""

    def __init__(self, world: D.World):
        host, port = D.parse_address(world.coordinator, "DMLC_PS_ROOT_URI:DMLC_PS_ROOT_PORT")
        D.wait_reachable(host, port, D.timeout_s(), "the MXNet scheduler (DMLC_PS_ROOT_URI:DMLC_PS_ROOT_PORT)")
        from .runtime import mx

        self.mx = mx
        self.errors = (mx.base.MXNetError,)
        self._keys = set()
        self.ended_well = False
        # ps-lite waits for every node without a timeout: bound the meeting (a worker that never comes)
        watchdog = threading.Timer(D.timeout_s(), _give_up, args=(world,))
        watchdog.daemon = True
        watchdog.start()
        try:
            self.kv = mx.kv.create("dist_sync")
            self.world = D.World(size=self.kv.num_workers, rank=self.kv.rank, engine=ENGINE,
                                 coordinator=world.coordinator)
            self._check_float64()
        finally:
            watchdog.cancel()
        _joined[:] = [self.world]

    def _check_float64(self) -> None:
        """Every server sums float64 as float64 (MXNet 1.9.1's servers may not: ``nin_common.util.runtime``, fix 3)."""
        servers = int(os.environ.get("DMLC_NUM_SERVER") or 1)
        keys, k = {}, PROBE_KEY
        while len(keys) < servers:  # a small value's key lives on server (key * 9973) % servers (kvstore_dist.h)
            keys.setdefault((k * 9973) % servers, k)
            k += 1
        got = []
        for key in keys.values():
            got.append(self._sum(key, np.array([PROBE]))[0])
        expected = PROBE * self.world.size
        if any(g != expected for g in got):
            raise ValueError(f"expected MXNet's parameter servers to sum float64 exactly, got {got[0]!r} for "
                             f"{expected!r} (rounded to float32): MXNet 1.9.1's server leaves multi_precision_ "
                             f"uninitialised; start the servers with GLIBC_TUNABLES={_tunables()} (nin does, "
                             f"see common/util/runtime.py)")

    def _sum(self, key: int, values: np.ndarray) -> np.ndarray:
        mx = self.mx
        if key not in self._keys:  # init is collective (rank 0's value, a barrier): every worker in the same order
            self.kv.init(key, mx.nd.zeros(values.shape, dtype="float64"))
            self._keys.add(key)
        out = mx.nd.zeros(values.shape, dtype="float64")
        self.kv.pushpull(key, mx.nd.array(values, dtype="float64"), out=out)
        return out.asnumpy().astype(np.float64)

    def all_sum(self, values: Sequence[float]) -> np.ndarray:
        self.ended_well = False
        values = np.asarray(values, np.float64).ravel()
        return self._sum(METRICS_KEY + len(values), values)

    def barrier(self) -> None:
        self.kv._barrier()
        self.ended_well = True

    def scope(self):
        return nullcontext()

    def leave(self) -> None:
        """Free the kvstore now (a Trainer may still hold it): after a barrier, worker 0 stops the servers and
        every node leaves ps-lite; else (an error on this worker) without waiting for the others."""
        kv = getattr(self, "kv", None)
        if kv is None or kv.handle is None:
            return
        from mxnet.base import _LIB, check_call
        import ctypes

        if not self.ended_well:
            check_call(_LIB.MXKVStoreSetBarrierBeforeExit(kv.handle, ctypes.c_int(0)))
        handle, kv.handle = kv.handle, None
        check_call(_LIB.MXKVStoreFree(handle))


def _tunables() -> str:
    from nin_common.util.runtime import SERVER_HEAP_TUNABLES

    return SERVER_HEAP_TUNABLES


def _give_up(world: D.World) -> None:
    """Called by the joining watchdog: the workers did not all meet in time; one line, exit 2 (ps-lite would wait
    forever, in C++, where no exception reaches)."""
    sys.stderr.write(f"nin: error: expected {world.size} MXNet workers, one server and the scheduler to meet "
                     f"at {world.coordinator}, got no meeting in {D.timeout_s():g} s ({D.TIMEOUT_VARIABLE})\n")
    sys.stderr.flush()
    os._exit(2)


def join(world: D.World, device: str = "auto") -> Group:
    return Group(world)  # the device needs no choice here: the engine's transport is the same for both


def broadcast_weights(trainer) -> None:
    """Worker 0's weights on every worker, through the kvstore, before the first step: what ``gluon.Trainer``
    does in its first ``step``, here waited for.

    WORKAROUND for a race in MXNet 1.9.1's Gluon Trainer with a dist kvstore and ``update_on_kvstore=False``:
    its first ``step`` pulls every weight from the servers (the broadcast), then pushes and pulls every
    gradient, all asynchronous.  The gradient's push-pull touches only the gradient array, so the engine does not
    order it after the pull into the weight array; when the gradients of both workers reach the server before
    a worker's pull of the weights, the server (which only sums: its value is the last sum) sends that worker
    the summed gradients as its weights.  Measured, 2 workers, lr 0: in 2 runs of 5 the second step's summed
    gradients were 0.5 and 193 relative off the exact sum; 0 in 6 of 6 with this.  Initialising the keys here
    and waiting for the weights orders the two."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    for param in trainer._params:
        for data in param.list_data():
            data.wait_to_read()


def sgd_steps(group: Group, model, batches, lr: float):
    """Plain SGD through the kvstore on this worker's slices, dropout off, at the model's dtype."""
    from mxnet import gluon

    from . import parity

    trainer = gluon.Trainer(model.collect_params(), "sgd", {"learning_rate": lr}, kvstore=group.kv,
                            update_on_kvstore=False)
    broadcast_weights(trainer)
    for x, y, global_batch in batches:
        parity._backward(model, x, y, total=global_batch)
        trainer.step(1)  # the servers sum the workers' gradients of (summed loss / global batch)
    return parity.parameters(model)


# -------------------------------------------------------------- MXNet's launcher (python -m nin_mxnet.distributed)

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
        sys.stderr.write(f"nin_mxnet.distributed: the {role} of task {task} ended with exit status {code}; the "
                         f"others wait for it: stop the launcher (Ctrl-C)\n")
        return None

    threading.excepthook = hook


def launcher(argv: Optional[List[str]] = None) -> None:
    """MXNet's own launcher, ``mxnet/tools/launch.py`` (with ``dmlc_tracker``), as shipped in the mxnet 1.9.1
    wheel, made to run on Python 3.9 and later: ``python -m nin_mxnet.distributed`` takes launch.py's arguments.

        python -m nin_mxnet.distributed -n 2 --launcher local python -m nin_common.cli train --backend mxnet \\
            --out runs/mx

    WORKAROUND for a defect of dmlc_tracker in the mxnet 1.9.1 wheel (and every earlier one): its tracker waits
    on its threads with ``threading.Thread.isAlive``, which Python 3.9 removed (``is_alive`` is the name since
    2.6), so launch.py stops with an AttributeError right after starting the scheduler.  Here ``Thread.isAlive``
    is given back as ``Thread.is_alive`` before launch.py runs, unchanged (``runpy``).

    With ``--launcher local`` every process runs on this machine, so they meet on the loopback: the scheduler's
    address is 127.0.0.1 (the tracker would otherwise pick this machine's outward address, and fails on a machine
    without one) and every node binds to 127.0.0.1 (``DMLC_NODE_HOST``); ``--port P`` (ours, before launch.py's
    arguments) puts the scheduler on port P instead of the first free port from 9091."""
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
    launcher()
