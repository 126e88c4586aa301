"""Data-parallel NiN in JAX: ``jax.distributed`` and one ``Mesh`` over every process's devices.

How the idiom reads (JAX's multi-process guide): every process calls ``jax.distributed.initialize`` with the
coordinator's address, the process count and its own id (JAX reads ``JAX_COORDINATOR_ADDRESS`` itself, and
detects SLURM and Open MPI); ``jax.devices()`` then lists every process's devices.  The batch is one global
array sharded along a ``workers`` axis of a ``Mesh`` over them (``NamedSharding(mesh, P("workers"))``), built
from each process's slice; the parameters are replicated (``P()``).  The jitted step computes the global batch's
mean loss, and XLA inserts the all-reduce of the gradients itself (gloo between CPU processes, NCCL on GPUs).

Dropout: the masks of a global batch are drawn from one key that every worker holds (the key must be the same
everywhere, as any replicated input of a global computation), rank 0's seed of the epoch, so each worker's
masks are the rows of the global draw that fall on its slice.  Unequal slices (an epoch's last batch) are
padded to equal shards with images of weight 0, so the loss is exact.

The module has two parts: how the workers start (``ENGINE`` to ``launch_plan``,
``nin_common.engine.contract.DistributedModule``), which the process that launches the workers reads without
importing JAX (``nin_common.engine.registry.launching`` loads this file alone); and what a worker does
(``join``, ``Group``, ``sgd_steps``), which imports JAX when called.
"""
from __future__ import annotations

import os
import signal
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence

import numpy as np

from nin_common.engine import distributed as D
from nin_common.engine.launch import Process


# -------------------------------------------------------------- how the workers start (no JAX)

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


# -------------------------------------------------------------- a worker (imports JAX)

AXIS = "workers"


class Group:
    """The processes of this run, joined through ``jax.distributed`` (``nin_common.engine.distributed.Group``)."""

    def __init__(self, world: D.World):
        import jax

        self.world, self.lost = world, False
        host, port = D.parse_address(world.coordinator, ADDRESS)
        if world.rank == 0:
            D.check_port_free(port, host if host in ("127.0.0.1", "localhost") else "0.0.0.0")
        else:
            D.wait_reachable(host, port, D.timeout_s(), f"the JAX coordinator ({ADDRESS})")
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # before the CPU client exists
        try:
            jax.distributed.initialize(world.coordinator, world.size, world.rank,
                                       initialization_timeout=max(1, int(D.timeout_s())))
        except Exception as err:  # the coordination service's errors are XlaRuntimeError / RuntimeError
            raise ValueError(f"expected {world.size} workers to meet at {world.coordinator}, got: "
                             f"{str(err).splitlines()[0]}") from None
        # jax.distributed installs XLA's preemption notifier as the SIGTERM handler, which logs "SIGTERM caught"
        # on stderr and keeps running; a worker told to stop by its launcher stops, quietly, as by default
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.sharded = NamedSharding(self.mesh, PartitionSpec(AXIS))
        self.errors = (jax.errors.JaxRuntimeError, RuntimeError)

    # -- global arrays from this process's parts, and back
    def replicate(self, tree):
        """A pytree of this process's (identical on every process) arrays as replicated global arrays."""
        from jax.experimental import multihost_utils as mh
        from jax.sharding import PartitionSpec

        return mh.host_local_array_to_global_array(tree, self.mesh, PartitionSpec())

    def shard(self, tree):
        """This process's slices as one global array per leaf, sharded along the workers (equal slices)."""
        from jax.experimental import multihost_utils as mh
        from jax.sharding import PartitionSpec

        return mh.host_local_array_to_global_array(tree, self.mesh, PartitionSpec(AXIS))

    @staticmethod
    def local(tree):
        """This process's copy (a replicated array) or slice (a sharded one) of each global array."""
        import jax

        return jax.tree.map(lambda a: a.addressable_data(0), tree)

    def all_sum(self, values: Sequence[float]) -> np.ndarray:
        from jax.experimental import multihost_utils as mh

        return np.asarray(mh.process_allgather(np.asarray(values, np.float64)), np.float64).sum(axis=0)

    def same_everywhere(self, value: int) -> int:
        """Rank 0's ``value``, on every worker."""
        from jax.experimental import multihost_utils as mh

        return int(mh.broadcast_one_to_all(np.asarray(value, np.int64)))

    def barrier(self) -> None:
        from jax.experimental import multihost_utils as mh

        mh.sync_global_devices("nin")

    def scope(self):
        return nullcontext()

    def leave(self) -> None:
        import jax

        if not self.lost:  # shutting down waits for every process: not after one was lost
            jax.distributed.shutdown()


def join(world: D.World, device: str = "auto") -> Group:
    return Group(world)  # the device needs no choice here: the engine's transport is the same for both


def padded(images: np.ndarray, labels: np.ndarray, world: D.World, global_batch: int):
    """This worker's slice padded to the largest slice of the global batch, with a weight per image (0 for the
    padding): equal shards, as a sharded global array needs, and an exact mean."""
    size = -(-global_batch // world.size)
    weight = np.zeros(size, np.float32)
    weight[:len(labels)] = 1
    pad = size - len(labels)
    if pad:
        images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
        labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
    return images, labels, weight


def sgd_steps(group: Group, model, batches, lr: float):
    """Plain SGD through the mesh on this worker's slices, dropout off, at the model's dtype (float64 models run
    under JAX's x64 switch); the canonical weights after the last step."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from . import parity
    from .model import precision_of

    with precision_of(model):
        graphdef, params = nnx.split(model, nnx.Param)
        dtype = jax.tree.leaves(params)[0].dtype

        @jax.jit
        def step(params, x, y, w, n):
            def loss(p):
                logits = nnx.merge(graphdef, p)(x)  # no key: dropout off
                return (optax.softmax_cross_entropy_with_integer_labels(logits, y) * w).sum() / n
            grads = jax.grad(loss)(params)
            return jax.tree.map(lambda p, g: p - jnp.asarray(lr, p.dtype) * g, params, grads)

        params = group.replicate(params)
        for x, y, global_batch in batches:
            x, y, w = padded(np.asarray(x, dtype), np.asarray(y, np.int32), group.world, global_batch)
            xg, yg, wg = group.shard((x, y, w.astype(dtype)))
            params = step(params, xg, yg, wg, jnp.asarray(global_batch, dtype))
        nnx.update(model, group.local(params))
    return parity.parameters(model)
