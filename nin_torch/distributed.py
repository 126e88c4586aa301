"""Data-parallel NiN in PyTorch: ``torch.distributed`` with ``DistributedDataParallel``, started by ``torchrun``.

How the idiom reads (PyTorch's DDP tutorial): every worker builds the same model, wraps it in
``DistributedDataParallel`` (which broadcasts rank 0's weights and all-reduces the gradients, averaged, in
buckets that overlap the backward pass), and steps on its own slice of the batch.  The transport is gloo on a
CPU and NCCL on GPUs (one GPU per worker: ``LOCAL_RANK``).  ``torchrun`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``environment_world`` reads them.

The module has three parts: how the workers start (``ENGINE`` to ``launch_plan``,
``nin_common.engine.contract.DistributedModule``), which the process that launches the workers reads without
importing torch (``nin_common.engine.registry.launching`` loads this file alone); what a worker does (``join``,
``Group``, ``sgd_steps``), which imports torch when called; and ``torchrun`` for ``nin train --workers``
(``python -m nin_torch.distributed``, below).
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import os
import sys
from contextlib import nullcontext
from datetime import timedelta
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import numpy as np

from nin_common.engine import distributed as D
from nin_common.engine.launch import Process

if TYPE_CHECKING:
    import torch
    from torch.nn.parallel import DistributedDataParallel

ENGINE = "torch.distributed + DistributedDataParallel (gloo on a CPU, NCCL on GPUs)"
LAUNCHER = "torchrun"
ONE_PRECISION_PER_JOB = False  # float64 then float32 in one job (the data-parallel parity check)


# -------------------------------------------------------------- how the workers start (no torch)

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
    """``torchrun --nproc_per_node N`` on this machine, meeting at 127.0.0.1:port (``torchrun`` below:
    torchrun itself, its failure report left to nin's launcher)."""
    if port is None:
        port = D.free_port()
    else:
        D.check_port_free(port)
    interpreter, *argv = worker_argv
    return [Process([interpreter, "-m", "nin_torch.distributed", "--nnodes", "1", "--nproc_per_node",
                     str(workers), "--master_addr", "127.0.0.1", "--master_port", str(port),
                     "--monitor_interval", "0.5", *argv],
                    name="torchrun")]


# -------------------------------------------------------------- a worker (imports torch)

def _torch():
    """torch and ``torch.distributed``, imported where a worker needs them (never in the launching process)."""
    import torch
    import torch.distributed as dist

    return torch, dist


def transport(device: str = "auto", local_workers: int = 1) -> str:
    """NCCL when the workers train on GPUs (``device`` auto or gpu, and CUDA sees one), else gloo: CPU workers on
    a machine with GPUs (``--device cpu``) meet over gloo, since NCCL moves CUDA tensors only.  NCCL needs a GPU of
    its own for each of the ``local_workers`` on this machine; fewer is a ValueError saying so."""
    torch, _ = _torch()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not gpus or device == "cpu":
        return "gloo"
    if gpus < local_workers:
        raise ValueError(f"expected a GPU for each of the {local_workers} workers on this machine (NCCL), got "
                         f"{gpus}: use --workers {gpus} or fewer, or --device cpu")
    return "nccl"


class Group:
    """The process group of this run's workers (``nin_common.engine.distributed.Group``)."""

    def __init__(self, world: D.World, device: str = "auto"):
        torch, dist = _torch()
        self.errors = (dist.DistError, RuntimeError)  # gloo reports a lost peer as a RuntimeError from its C++ side
        self.transport = transport(device, int(os.environ.get("LOCAL_WORLD_SIZE", world.size)))
        self.wrapped: Optional[DistributedDataParallel] = None
        self.world = dataclasses.replace(world, engine=f"torch.distributed, {self.transport}")
        if self.transport == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", world.rank)))
        threads = D.optional_int(os.environ.get(D.THREADS_VARIABLE))
        if threads:
            torch.set_num_threads(threads)
        host, port = D.parse_address(world.coordinator, "MASTER_ADDR:MASTER_PORT")
        if world.rank != 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
            D.wait_reachable(host, port, D.timeout_s(), "the rank-0 worker (MASTER_ADDR:MASTER_PORT)")
        if world.rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
            D.check_port_free(port, "0.0.0.0" if host not in ("127.0.0.1", "localhost") else host)
        try:
            dist.init_process_group(self.transport, rank=world.rank, world_size=world.size,
                                    timeout=timedelta(seconds=D.timeout_s()))
        except dist.DistError as err:
            raise ValueError(f"expected {world.size} workers to meet at {world.coordinator}, got: "
                             f"{str(err).splitlines()[0]}") from None

    def _device(self) -> torch.device:
        torch, _ = _torch()
        return torch.device("cuda", torch.cuda.current_device()) if self.transport == "nccl" else torch.device("cpu")

    def all_sum(self, values: Sequence[float]) -> np.ndarray:
        torch, dist = _torch()
        t = torch.tensor(np.asarray(values, np.float64), device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().numpy()

    def barrier(self) -> None:
        _torch()[1].barrier()

    def scope(self):
        return nullcontext()

    def wrap(self, model: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
        """The model as DDP trains it: one replica per worker, gradients all-reduced (averaged) during backward.

        The group keeps the wrapper (``wrapped``; a trainer reaches it there) so that ``leave`` frees it before
        destroying the process group: DDP's reducer holds the group, and DDP sits in reference cycles, so without
        this it lived until the interpreter's exit, after the group's shutdown, where gloo's teardown now and then
        aborted a worker whose run had ended well (``terminate called without an active exception``: 4 of 65
        two-worker runs of a minimal DDP script on a loaded 2-core CPU; none of 60 with the wrapper freed first)."""
        from torch.nn.parallel import DistributedDataParallel

        self.wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        return self.wrapped

    def leave(self) -> None:
        self.wrapped = None
        gc.collect()  # the DDP wrapper's cycles (its hooks refer back to it): freed now, while the group lives
        _, dist = _torch()
        if dist.is_initialized():
            dist.destroy_process_group()


def join(world: D.World, device: str = "auto") -> Group:
    return Group(world, device)


def global_mean_loss(logits: torch.Tensor, y: torch.Tensor, world: D.World, global_batch: int) -> torch.Tensor:
    """This worker's share of the global batch's mean loss, scaled for DDP's average over the workers: DDP divides
    the summed gradients by the worker count, so sum(losses) * size / global_batch gives the gradient of the
    global mean even when the workers' slices differ in size (an epoch's last batch)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits, y, reduction="sum") * (world.size / global_batch)


def sgd_steps(group: Group, model, batches, lr: float):
    """Plain SGD through DDP on this worker's slices, dropout off (``eval`` mode), at the model's dtype."""
    from . import parity

    torch, _ = _torch()
    device = next(model.parameters()).device
    ddp = group.wrap(model, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.eval()
    for x, y, global_batch in batches:
        optimizer.zero_grad(set_to_none=True)
        logits = ddp(torch.from_numpy(np.ascontiguousarray(x)).to(device))
        global_mean_loss(logits, torch.from_numpy(np.asarray(y, np.int64)).to(device), group.world,
                         global_batch).backward()
        optimizer.step()
    return parity.parameters(model)


# -------------------------------------------------------------- torchrun for nin train --workers

def torchrun(argv: Optional[List[str]] = None) -> int:
    """``torchrun`` for ``nin train --workers`` (``python -m nin_torch.distributed``, torchrun's arguments): torch's
    own launcher (``torch.distributed.run``, the same arguments and the same elastic agent), whose failure report
    is left to nin's launcher.

    torchrun ends a failed job by raising ``ChildFailedError`` out of its ``main``: a traceback and a table of the
    failed ranks on stderr.  nin's launcher already names the lost worker in one line, so here the job's failure is
    an exit status instead, and the agent's own log is silenced.  Started by hand, ``torchrun`` works unchanged."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for name in [n for n in logging.Logger.manager.loggerDict if n.startswith("torch.distributed")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the agent's report of the failed worker
    try:
        run(parse_args(argv))
    except ChildFailedError as err:
        codes = [failure.exitcode for failure in err.failures.values()]
        return next((c for c in codes if c > 0), 1)
    return 0


if __name__ == "__main__":
    sys.exit(torchrun())
