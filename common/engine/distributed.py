"""Data-parallel training, framework-free: who this process is among the workers, what its share of each batch
is, and what every backend's engine must offer the training loop.

Each backend's ``distributed`` module (``nin_<b>/distributed.py``) wraps its framework's own engine
(``torch.distributed`` + DDP, ``tf.distribute.MultiWorkerMirroredStrategy``, MXNet's ``dist_sync`` kvstore,
``jax.distributed``); nothing here averages a gradient or moves a parameter.  What is written once:

* ``World``: this process's rank among ``size`` workers, read from the variables the engine's launcher sets;
* the semantics users rely on: the global batch (the recipe's) is cut into contiguous per-worker slices of
  each batch of the single-process epoch order (``local_slice``), so the union of the workers' shards is that
  epoch, every image once; the validation split is cut into contiguous shards (``eval_shard``); dropout is
  re-seeded per (seed, epoch, rank) (``worker_seed``);
* the checks that refuse a setting the workers could not share (``check_world``).

A backend's ``Group`` (what ``join`` returns) offers the loop the engine's collectives: ``all_sum`` (metrics
over all workers), ``barrier`` and ``leave``; one worker (rank 0, ``World.chief``) writes.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager, Optional, Protocol, Sequence, Tuple

import numpy as np

# how long a worker waits for the others (joining, one collective) before it gives up, in seconds: long enough
# for a slow first step (a graph being compiled), short enough that a lost worker ends the job
DEFAULT_TIMEOUT_S = 120.0
TIMEOUT_VARIABLE = "NIN_DIST_TIMEOUT"  # seconds a worker waits for the others (joining, one collective)


def timeout_s() -> float:
    """How long a worker waits for the others: ``NIN_DIST_TIMEOUT`` seconds, else ``DEFAULT_TIMEOUT_S``."""
    return float(os.environ.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT_S)
# the variables our own launcher (``nin train --workers``) sets in every worker, besides the engine's
THREADS_VARIABLE = "NIN_WORKER_THREADS"


@dataclass(frozen=True)
class World:
    """This process among ``size`` data-parallel workers (``size`` 1: training alone)."""

    size: int = 1
    rank: int = 0
    engine: str = ""          # for people: "torch.distributed (gloo)"
    coordinator: str = ""     # the address the workers meet at ("127.0.0.1:29500"), where there is one

    @property
    def chief(self) -> bool:
        """The one worker that writes metrics, curves and checkpoints and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


ALONE = World()


class Group(Protocol):
    """What a backend's ``join(world)`` returns: the engine's collectives, as the training loop needs them."""

    world: World

    def all_sum(self, values: Sequence[float]) -> np.ndarray:
        """The element-wise sum of ``values`` (a short float64 vector) over every worker, on every worker."""

    def barrier(self) -> None: ...

    def scope(self) -> ContextManager:
        """What models and optimizers are created under (a ``tf.distribute`` strategy's scope; else nothing)."""

    def leave(self) -> None:
        """Leave the engine (destroy the process group, ...); safe to call twice."""


class Alone:
    """The ``Group`` of a process training alone: every collective is the identity."""

    world = ALONE

    def all_sum(self, values: Sequence[float]) -> np.ndarray:
        return np.asarray(values, np.float64)

    def barrier(self) -> None:
        return None

    def scope(self) -> ContextManager:
        return nullcontext()

    def leave(self) -> None:
        return None


class WorkerLost(RuntimeError):
    """Another worker went away (killed, crashed, unreachable): this one stops; the message says what was lost."""


# ---------------------------------------------------------------- the workers' shares

def check_world(world: World, batch_size: int, n_train: int) -> None:
    """Refuse a global batch the workers cannot split evenly, and an epoch whose last batch leaves a worker
    without images (the same line in every backend)."""
    if world.size < 1 or not 0 <= world.rank < world.size:
        raise ValueError(f"expected a worker rank in 0..{world.size - 1} of {world.size} worker(s), got rank "
                         f"{world.rank}")
    if batch_size % world.size:
        raise ValueError(f"expected a batch size that {world.size} workers split evenly (a multiple of "
                         f"{world.size}), got {batch_size}: the batch is the global one, cut into equal shares")
    last = n_train % batch_size
    if last and last < world.size:
        raise ValueError(f"expected every batch to give each of the {world.size} workers an image, got a last "
                         f"batch of {last} image(s) ({n_train} training images, batch {batch_size}): change "
                         f"--limit-train")


def local_slice(n: int, world: World) -> slice:
    """The part of a global batch of ``n`` images that ``world.rank`` trains on: contiguous, the shares as equal
    as they can be (a batch of 128 over 2 workers: images 0-63 and 64-127)."""
    bounds = np.linspace(0, n, world.size + 1).round().astype(int) if n % world.size else \
        np.arange(world.size + 1) * (n // world.size)
    return slice(int(bounds[world.rank]), int(bounds[world.rank + 1]))


def eval_shard(n: int, world: World) -> slice:
    """The contiguous part of an ``n``-image evaluation split this worker evaluates (each image on one worker)."""
    return local_slice(n, world)


def worker_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed a worker's random state (dropout) gets at the start of ``epoch``: from (seed, epoch, rank); rank 0
    gets the single-process seed, so one worker alone draws what a run without workers draws (a 31-bit integer)."""
    entropy = [seed, epoch] + ([rank] if rank else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def split_threads(cores: int, workers: int) -> int:
    """Threads per worker on a machine of ``cores``: the cores shared out, at least one each."""
    return max(1, cores // max(1, workers))


def describe(world: World) -> str:
    return "1 worker" if world.size == 1 else f"{world.size} workers ({world.engine})"


def parse_address(text: str, what: str) -> Tuple[str, int]:
    """'host:port' -> (host, port), one clear line when it is not that."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected {what} as HOST:PORT, got {text!r}")
    return host, int(port)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the kernel's choice)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Refuse a port another program listens on, before any worker starts."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as err:
            raise ValueError(f"expected a free port for the workers to meet at, got {host}:{port}, which is in use "
                             f"({err.strerror}): choose another with --port") from None


def wait_reachable(host: str, port: int, timeout_s: float, what: str) -> None:
    """Wait until something listens at host:port (a coordinator, a scheduler), at most ``timeout_s``; else one line."""
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, timeout_s)):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise ValueError(f"expected {what} listening at {host}:{port}, got no answer in {timeout_s:g} s "
                                 f"({err.strerror or err}): is it running, and is the address right?") from None
            time.sleep(0.2)


def optional_int(value: Optional[str]) -> Optional[int]:
    return None if value in (None, "") else int(value)
