"""How TensorFlow's data-parallel workers start: one process per worker, each with its ``TF_CONFIG``, as a
cluster manager starts them.  Framework-free (``nin_common.engine.contract.LaunchingModule``): the process that
launches the workers never imports TensorFlow."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

from nin_common.engine import distributed as D
from nin_common.engine.launch import Process

ENGINE = "tf.distribute.MultiWorkerMirroredStrategy (collectives over gRPC, ring all-reduce)"
LAUNCHER = "one process per worker, each with its TF_CONFIG (as a cluster manager starts them)"
ONE_PRECISION_PER_JOB = False  # float64 then float32 in one job (the data-parallel parity check)
JOB = "worker"                         # the one TF_CONFIG job the workers form


def _cluster() -> Optional[Tuple[List[str], int]]:
    """(every worker's address, this worker's index) from TF_CONFIG, or None where it is unset."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError:
        raise ValueError(f"expected TF_CONFIG as JSON ({{\"cluster\": {{\"worker\": [...]}}, \"task\": "
                         f"{{\"type\": \"worker\", \"index\": i}}}}), got {text[:80]!r}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    workers = cluster.get(JOB) if isinstance(cluster, dict) else None
    if not isinstance(workers, list) or not workers or not isinstance(task, dict):
        raise ValueError(f"expected TF_CONFIG with a cluster of workers and this process's task, got {text[:80]!r}")
    others = sorted(set(cluster) - {JOB})
    if others or task.get("type") != JOB:
        raise ValueError(f"expected TF_CONFIG with {JOB} tasks only (data-parallel workers, no chief, ps or "
                         f"evaluator), got jobs {sorted(cluster)} and task type {task.get('type')!r}")
    index = task.get("index")
    if not isinstance(index, int) or not 0 <= index < len(workers):
        raise ValueError(f"expected TF_CONFIG's task index in 0..{len(workers) - 1}, got {index!r}")
    for address in workers:
        D.parse_address(address, "each TF_CONFIG worker")
    return [str(w) for w in workers], index


def environment_world() -> Optional[D.World]:
    """The worker ``TF_CONFIG`` makes this process (rank: its task index; the coordinator: worker 0, which hosts
    the coordination service), or None when TF_CONFIG is unset."""
    found = _cluster()
    if found is None:
        return None
    workers, index = found
    return D.World(size=len(workers), rank=index, engine="MultiWorkerMirroredStrategy, gRPC",
                   coordinator=workers[0])


def _tf_config(addresses: Sequence[str], rank: int) -> str:
    return json.dumps({"cluster": {JOB: list(addresses)}, "task": {"type": JOB, "index": rank}})


def worker_environment(workers: int, rank: int, port: int) -> Dict[str, str]:
    """The TF_CONFIG of worker ``rank`` of ``workers`` on this machine, at ports port, port + 1, ..."""
    return {"TF_CONFIG": _tf_config([f"127.0.0.1:{port + i}" for i in range(workers)], rank)}


def _free_ports(n: int) -> List[int]:
    ports: List[int] = []
    while len(ports) < n:
        port = D.free_port()
        if port not in ports:
            ports.append(port)
    return ports


def launch_plan(workers: int, worker_argv: List[str], threads: int, port: Optional[int]) -> List[Process]:
    """One process per worker, each with its TF_CONFIG (ports port, port + 1, ..., each checked free, or free
    ones) and its ``threads`` (``NIN_WORKER_THREADS``: the intra-op pool, which the results depend on).  The
    engine's C++ error log is off in the workers (TF_CPP_MIN_LOG_LEVEL 3) unless TF_CPP_MIN_LOG_LEVEL asks for more
    (0 or 1): a worker that loses the others says so in one line (the Python error), which the engine's log would
    repeat at length."""
    if port is None:
        addresses = [f"127.0.0.1:{p}" for p in _free_ports(workers)]
    else:
        for i in range(workers):
            D.check_port_free(port + i)
        addresses = [f"127.0.0.1:{port + i}" for i in range(workers)]
    env = {D.THREADS_VARIABLE: str(threads)}  # applied by ``join``, before the runtime starts
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") not in ("0", "1"):  # unless INFO or WARNING is asked for
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return [Process(list(worker_argv), dict(env, TF_CONFIG=_tf_config(addresses, rank)),
                    name=f"worker {rank} of {workers}") for rank in range(workers)]
