"""How JAX's data-parallel workers start: one process per worker with the coordinator's address, the process
count and its id.  Framework-free (``nin_common.engine.contract.LaunchingModule``): the process that launches the
workers never imports JAX."""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from nin_common.engine import distributed as D
from nin_common.engine.launch import Process

ENGINE = "jax.distributed + a Mesh/NamedSharding over every process's devices (gloo on a CPU, NCCL on GPUs)"
LAUNCHER = "one process per worker with JAX_COORDINATOR_ADDRESS, NIN_JAX_NUM_PROCESSES, NIN_JAX_PROCESS_ID"
ONE_PRECISION_PER_JOB = False  # float64 then float32 in one job (the data-parallel parity check)
# JAX reads the coordinator's address from JAX_COORDINATOR_ADDRESS; the count and the id have no variable of
# JAX's own (SLURM and Open MPI give them, detected by JAX), hence ours
ADDRESS, COUNT, ID = "JAX_COORDINATOR_ADDRESS", "NIN_JAX_NUM_PROCESSES", "NIN_JAX_PROCESS_ID"


def environment_world() -> Optional[D.World]:
    size, rank = D.optional_int(os.environ.get(COUNT)), D.optional_int(os.environ.get(ID))
    address = os.environ.get(ADDRESS)
    if size is None or rank is None or not address:
        return None
    return D.World(size=size, rank=rank, engine="jax.distributed, gloo", coordinator=address)


def worker_environment(workers: int, rank: int, port: int) -> Dict[str, str]:
    return {ADDRESS: f"127.0.0.1:{port}", COUNT: str(workers), ID: str(rank)}


def launch_plan(workers: int, worker_argv: List[str], threads: int, port: Optional[int]) -> List[Process]:
    """One process per worker, as a cluster manager would start them (SLURM's ``srun`` runs the same command
    on every node and JAX reads the rest from SLURM's variables)."""
    if port is None:
        port = D.free_port()
    else:
        D.check_port_free(port)
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" if threads == 1 else ""
    env = {"XLA_FLAGS": " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), flags]))} if flags else {}
    # XLA's runtime logs warnings on stderr (e.g. "SIGTERM caught" when the launcher stops a worker): errors only
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    return [Process(list(worker_argv), dict(env, **worker_environment(workers, rank, port)), f"worker {rank}")
            for rank in range(workers)]
