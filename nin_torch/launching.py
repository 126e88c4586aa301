"""How PyTorch's data-parallel workers start: ``torchrun`` (its variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``).  Framework-free (``nin_common.engine.contract.LaunchingModule``): the process that
launches the workers never imports torch."""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from nin_common.engine import distributed as D
from nin_common.engine.launch import Process

ENGINE = "torch.distributed + DistributedDataParallel (gloo on a CPU, NCCL on GPUs)"
LAUNCHER = "torchrun"
ONE_PRECISION_PER_JOB = False  # float64 then float32 in one job (the data-parallel parity check)


def environment_world() -> Optional[D.World]:
    """The worker ``torchrun`` (or a cluster manager setting its variables) made this process, or None."""
    size, rank = D.optional_int(os.environ.get("WORLD_SIZE")), D.optional_int(os.environ.get("RANK"))
    if size is None or rank is None:
        return None
    address = f"{os.environ.get('MASTER_ADDR', '127.0.0.1')}:{os.environ.get('MASTER_PORT', '29500')}"
    return D.World(size=size, rank=rank, engine="torch.distributed", coordinator=address)  # join adds the transport


def worker_environment(workers: int, rank: int, port: int) -> Dict[str, str]:
    """The variables ``torchrun`` sets for worker ``rank`` of ``workers`` meeting at 127.0.0.1:port (what a
    cluster manager or another launcher sets to start a worker by hand)."""
    return {"RANK": str(rank), "WORLD_SIZE": str(workers), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(workers),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def launch_plan(workers: int, worker_argv: List[str], threads: int, port: Optional[int]) -> List[Process]:
    """``torchrun --nproc_per_node N`` on this machine, meeting at 127.0.0.1:port (``nin_torch.torchrun``: torchrun
    itself, its failure report left to nin's launcher)."""
    if port is None:
        port = D.free_port()
    else:
        D.check_port_free(port)
    interpreter, *argv = worker_argv
    return [Process([interpreter, "-m", "nin_torch.torchrun", "--nnodes", "1", "--nproc_per_node",
                     str(workers), "--master_addr", "127.0.0.1", "--master_port", str(port),
                     "--monitor_interval", "0.5", *argv],
                    name="torchrun")]
