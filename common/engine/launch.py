"""``nin train --workers N``: start N workers on this machine through the backend's own launcher, watch them, and
leave no process behind (framework-free).

The backend's ``launching.launch_plan`` says what to start: ``torchrun`` (one process that starts the workers),
MXNet's ``tools/launch.py`` (scheduler, server and workers), or one process per worker with the variables a
cluster manager would set (``TF_CONFIG``, JAX's coordinator).  Every worker runs the same ``nin train`` command
line (``worker_command``) and finds its rank in those variables.  This module only starts, watches and stops
processes; the engine does every exchange of data.

Faults: each started process leads its own process group, so the whole tree under it can be stopped.  Each
worker writes its pid into the job folder once it has joined (``register``).  When a worker is gone before the
job is done (killed, crashed), or a started process fails, the others get ``GRACE_S`` to end on their own; then
every process group is terminated (SIGTERM, then SIGKILL), and one line says what was lost.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from nin_common.engine import registry
from nin_common.engine.distributed import THREADS_VARIABLE, split_threads
from nin_common.util.machine import available_cpus

JOB_VARIABLE = "NIN_JOB_DIR"  # the folder where workers started by us register their pids
GRACE_S = 5.0                 # what the other workers get to end on their own after one is lost
POLL_S = 0.2
STOP_WAIT_S = 1.0             # after SIGTERM, what the workers get before SIGKILL (see _stop)


@dataclass
class Process:
    """One process of a launch plan: its command line and what it adds to the environment."""

    argv: List[str]
    env: Dict[str, str] = field(default_factory=dict)
    name: str = "launcher"


class JobFailed(RuntimeError):
    """The workers did not all finish: the message says which one was lost or failed, and how."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def worker_command(backend: str, config, progress: bool) -> List[str]:
    """The ``nin train`` command line (after the interpreter) that every worker runs: the run's ``RunConfig``
    as options (``RunConfig.worker_flags``)."""
    argv = ["-m", "nin_common.cli", "train", "--backend", backend, *config.worker_flags()]
    return argv + ([] if progress else ["--no-progress"])


def threads_per_worker(workers: int) -> int:
    return split_threads(available_cpus(), workers)


def register(world_rank: int) -> None:
    """A worker started by ``start`` says it has joined (its pid, in the job folder); elsewhere a no-op.  From
    then on a SIGTERM (the engine's launcher stopping the workers that are left when one is lost) is reported as
    ``lost_the_others`` before the worker ends as SIGTERM ends it."""
    job = os.environ.get(JOB_VARIABLE)
    if job and os.path.isdir(job):
        with open(os.path.join(job, f"worker-{world_rank}.pid"), "w") as f:
            f.write(str(os.getpid()))

        def stopped(signum, frame):
            lost_the_others(world_rank)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        try:
            signal.signal(signal.SIGTERM, stopped)
        except ValueError:  # not the main thread: the launcher names the worker as best it can
            pass


def _mark(world_rank: int, what: str) -> None:
    """An empty ``worker-<rank>.<what>`` in the job folder of a worker started by ``start``; elsewhere a no-op."""
    job = os.environ.get(JOB_VARIABLE)
    if job and os.path.isdir(job):
        open(os.path.join(job, f"worker-{world_rank}.{what}"), "w").close()


def lost_the_others(world_rank: int) -> None:
    """A worker started by ``start`` says it stops because another one went away (so that, when several are gone
    by the time the launcher looks, it names the one that was lost, not this one); elsewhere a no-op."""
    _mark(world_rank, "lost-others")


def finish(world_rank: int) -> None:
    """A worker started by ``start`` says it ended well (so its exit is not a loss); elsewhere a no-op."""
    _mark(world_rank, "done")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is gone for us
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _exit_words(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"ended with exit status {code}"


def _stop(procs: Sequence[subprocess.Popen], wait_s: float = STOP_WAIT_S) -> None:
    """Terminate every process group we started (SIGTERM, then SIGKILL after ``wait_s``), and reap them.

    The wait is short: a worker blocked in a native call (a collective waiting for a peer that is gone, until
    the engine's own timeout) runs no Python code, so its SIGTERM handler (``register``) waits with it, and
    SIGTERM ends it only when the call returns.  Nothing is lost by not waiting: checkpoints are written
    atomically, and a stopped worker saves nothing.  (TensorFlow's coordination service, left running, logs
    its peer's missed heartbeats on stderr after 10 s, whatever TF_CPP_MIN_LOG_LEVEL says.)"""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.05)
        if all(p.poll() is not None for p in procs):
            break
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # what a launcher left in its group
        except (ProcessLookupError, PermissionError):
            pass
        p.wait()


def start(backend: str, workers: int, worker_argv: List[str], port: Optional[int] = None,
          timeout_s: Optional[float] = None) -> None:
    """Run the job: ``workers`` processes of ``worker_argv`` through the backend's launcher; returns when every
    worker has ended well, else raises JobFailed (after stopping every process).  ``timeout_s``: the most the
    whole job may take (tests)."""
    dist = registry.launching(backend)  # framework-free: the launcher never imports the framework
    threads = threads_per_worker(workers)
    with tempfile.TemporaryDirectory(prefix="nin-job-") as job:
        plan = dist.launch_plan(workers, [sys.executable] + list(worker_argv), threads, port)
        procs: List[subprocess.Popen] = []
        names: List[str] = []
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}

        def forward(signum, frame):  # a launcher stopped by its user stops its workers
            raise KeyboardInterrupt

        for s in previous:
            signal.signal(s, forward)
        try:
            for proc in plan:
                env = dict(os.environ, **proc.env)
                env.update({JOB_VARIABLE: job, THREADS_VARIABLE: str(threads), "OMP_NUM_THREADS": str(threads),
                            "MKL_NUM_THREADS": str(threads), "NIN_LAUNCHED": "1"})
                procs.append(subprocess.Popen(proc.argv, env=env, start_new_session=True))
                names.append(proc.name)
            _watch(procs, names, job, workers, timeout_s)
        finally:
            _stop(procs)
            for s, handler in previous.items():
                signal.signal(s, handler)


def _registered(job: str) -> Dict[int, int]:
    found = {}
    for name in os.listdir(job):
        if name.startswith("worker-") and name.endswith(".pid"):
            try:
                with open(os.path.join(job, name)) as f:
                    found[int(name[7:-4])] = int(f.read().strip() or 0)
            except (OSError, ValueError):
                continue
    return found


def _watch(procs: List[subprocess.Popen], names: List[str], job: str, workers: int,
           timeout_s: Optional[float]) -> None:
    started = time.monotonic()
    lost_since, lost = None, None
    while True:
        codes = [p.poll() for p in procs]
        if all(c == 0 for c in codes):
            return
        if lost is None:
            lost = _what_was_lost(names, codes, job, workers)
            lost_since = time.monotonic() if lost is not None else None
        if lost is not None:
            if all(c is not None for c in codes) or time.monotonic() - lost_since > GRACE_S:
                code = next((c for c in codes if c not in (None, 0)), 1)
                raise JobFailed(f"{lost}: the job stopped (every other worker was stopped)", 2 if code == 2 else 1)
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise JobFailed(f"the workers did not finish in {timeout_s:g} s: the job was stopped")
        time.sleep(POLL_S)


def _what_was_lost(names: Sequence[str], codes: Sequence[Optional[int]], job: str, workers: int) -> Optional[str]:
    """What ended the job, or None while nothing has.  Where a worker says it lost the others
    (``lost_the_others``), the one gone without saying so is named: when one is killed, the others may be gone
    too by the time the launcher looks."""
    def reported(rank):
        return rank is not None and os.path.exists(os.path.join(job, f"worker-{rank}.lost-others"))

    failed = [(n, c) for n, c in zip(names, codes) if c not in (None, 0)]
    gone = [r for r, pid in sorted(_registered(job).items())
            if pid and not _alive(pid) and not os.path.exists(os.path.join(job, f"worker-{r}.done"))]
    if any(reported(r) for r in range(workers)):
        culprits = [r for r in gone if not reported(r)]
        if culprits:
            child = next(((n, c) for n, c in failed if _rank_of(n) == culprits[0]), None)
            return (f"{_label(child[0], workers)} {_exit_words(child[1])}" if child
                    else f"worker {culprits[0]} of {workers} is gone")
    if failed:
        return f"{_label(failed[0][0], workers)} {_exit_words(failed[0][1])}"
    if gone and not all(c is not None for c in codes):
        return f"worker {gone[0]} of {workers} is gone"
    return None


def _rank_of(name: str) -> Optional[int]:
    """The rank in a process name 'worker 1' or 'worker 1 of 2'; None for a launcher."""
    parts = name.split()
    return int(parts[1]) if len(parts) >= 2 and parts[0] == "worker" and parts[1].isdigit() else None


def _label(name: str, workers: int) -> str:
    return f"{name} of {workers}" if name.startswith("worker ") and " of " not in name else name
