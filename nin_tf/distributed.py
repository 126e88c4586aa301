"""Data-parallel NiN in TensorFlow: ``tf.distribute.MultiWorkerMirroredStrategy``, one process per worker,
configured by ``TF_CONFIG`` as a cluster manager sets it.

How the idiom reads (TensorFlow's multi-worker tutorials): every worker process gets ``TF_CONFIG`` (the
addresses of all workers and its own index), creates the strategy before any other TensorFlow operation (it
starts this worker's gRPC server and the coordination service, hosted by worker 0), and creates its model and
optimizer under ``strategy.scope()``: the variables are mirrored (worker 0's initial values are broadcast to the
others).  A step is ``strategy.run`` on this worker's slice of the batch; each replica's loss is its share of
the global batch's mean (``sum(losses) / global_batch``), and the Keras optimizer, called in the replica
context, all-reduces (sums) the gradients over the workers before it updates the variables, the same update on
every worker.  CPUs here: one replica per worker process, the collectives over gRPC (ring all-reduce).

Importing this module imports no TensorFlow: the process that launches the workers reads how they start
(``launch_plan``: one process each, with its TF_CONFIG; ``nin_common.engine.registry.launching`` loads this file
alone), and a worker's functions import TensorFlow (``_tf``, after the package's ``runtime``) when called.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nin_common.engine import distributed as D
from nin_common.engine.launch import Process


# -------------------------------------------------------------- how the workers start (no TensorFlow)

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


# -------------------------------------------------------------- a worker (imports TensorFlow)

def _tf():
    """TensorFlow, imported where a worker needs it (never in the launching process), after the package's
    ``runtime`` (which prepares the process for it)."""
    from . import runtime  # noqa: F401
    import tensorflow as tf

    return tf


def _coordination_service(workers: int, timeout: float) -> None:
    """The coordination service as MultiWorkerMirroredStrategy configures it (standalone, led by worker 0, the
    workers' job), with one change: a worker waits ``timeout`` to register, not TensorFlow's default hour.
    The strategy keeps a configuration made before it (``configure_coordination_service`` has no public
    counterpart)."""
    from tensorflow.python.eager import context

    try:  # TensorFlow 2.17 keeps TSL's protos here
        from tensorflow.tsl.protobuf import coordination_config_pb2
    except ImportError:  # TensorFlow 2.21 under XLA's folder
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2

    context.context().configure_coordination_service(
        service_type="standalone", service_leader=f"/job:{JOB}/replica:0/task:0",
        cluster_register_timeout_in_ms=int(timeout * 1000),
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=JOB, num_tasks=workers)])


def engine_message(err: Exception) -> str:
    """The line of a TensorFlow error that says what happened: a graph's error opens with "Graph execution
    error:" and the Python frames where the failing node was defined, then the runtime's message."""
    lines = [line.rstrip() for line in (getattr(err, "message", None) or str(err)).splitlines()]
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    for line in lines[frames[-1] + 1 if frames else 0:]:
        text = line.strip()
        if text and text != "Graph execution error:" and not text.startswith("Detected at node"):
            return text
    return type(err).__name__


@contextmanager
def engine_errors():
    """A lost worker's error (``Group.errors``) raised again with the engine's own message as its first line."""
    tf = _tf()
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as err:
        raise type(err)(None, None, engine_message(err)) from None


class Group:
    """This run's workers in a MultiWorkerMirroredStrategy (``nin_common.engine.distributed.Group``)."""

    def __init__(self, world: D.World):
        tf = _tf()
        from . import runtime

        # what a collective raises when another worker went away: UnavailableError once the coordination service
        # misses its heartbeats (10 s) or its gRPC connection is reset; DeadlineExceededError when one collective
        # outlasts NIN_DIST_TIMEOUT
        self.errors = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)
        self.world = world
        workers, index = _cluster()
        threads = D.optional_int(os.environ.get(D.THREADS_VARIABLE))
        if threads:
            runtime.worker_threads(threads)
        runtime.worker_gpu(index)
        timeout = D.timeout_s()
        own_host, own_port = D.parse_address(workers[index], "this TF_CONFIG worker")
        D.check_port_free(own_port, "0.0.0.0" if own_host not in ("127.0.0.1", "localhost") else own_host)
        if index != 0:  # worker 0 hosts the coordination service: reachable first, or one line
            host, port = D.parse_address(workers[0], "TF_CONFIG's worker 0")
            D.wait_reachable(host, port, timeout, "worker 0 (TF_CONFIG's first address, the coordination service)")
        _coordination_service(len(workers), timeout)
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        try:
            with runtime.native_log_quiet():
                self.strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        except tf.errors.OpError as err:
            raise ValueError(f"expected {world.size} workers to meet at {world.coordinator} (TF_CONFIG), got: "
                             f"{engine_message(err)}") from None
        runtime.sigterm_ends_the_process()
        if self.strategy.num_replicas_in_sync != world.size:
            raise ValueError(f"expected one replica per worker ({world.size} in all), got "
                             f"{self.strategy.num_replicas_in_sync}: start one worker per device")
        self._sum = tf.function(self._sum_graph, input_signature=[tf.TensorSpec([None], tf.float64)])

    def _sum_graph(self, values):
        tf = _tf()
        per_replica = self.strategy.run(tf.identity, args=(values,))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def all_sum(self, values: Sequence[float]) -> np.ndarray:
        tf = _tf()
        with engine_errors():
            return self._sum(tf.constant(np.asarray(values, np.float64))).numpy()

    def barrier(self) -> None:
        """Every worker has come this far: an all-reduce that each one waits for (the strategy has no barrier)."""
        self.all_sum([0.0])

    def scope(self):
        return self.strategy.scope()

    def leave(self) -> None:
        """Nothing to undo: TensorFlow has no call that takes a worker out of its cluster; the gRPC server and the
        coordination agent end with the process (the agent says goodbye to the service then)."""
        return None


def join(world: D.World, device: str = "auto") -> Group:
    return Group(world)  # the device needs no choice here: the engine's transport is the same for both


def replica_loss(losses, global_batch):
    """This replica's share of the global batch's mean loss (``tf.nn.compute_average_loss`` with the global
    batch size): the optimizer sums the replicas' gradients, so the sum is the gradient of the global mean,
    whatever the slices' sizes."""
    tf = _tf()
    return tf.reduce_sum(losses) / tf.cast(global_batch, losses.dtype)


def sgd_steps(group: Group, model, batches, lr: float):
    """Plain SGD (``keras.optimizers.SGD``) through the strategy on this worker's slices, dropout off, at the
    model's dtype; the canonical weights after the last step."""
    from . import parity
    from .model import variables

    tf = _tf()
    from tensorflow import keras
    strategy = group.strategy
    params = [var for _, _, var in variables(model)]
    with strategy.scope():
        optimizer = keras.optimizers.SGD(learning_rate=lr)
        optimizer.build(params)

    @tf.function(reduce_retracing=True)
    def step(x, y, global_batch):
        def replica(x, y):
            with tf.GradientTape() as tape:
                logits = model(x, training=False)
                losses = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
                loss = replica_loss(losses, global_batch)
            optimizer.apply_gradients(zip(tape.gradient(loss, params), params))

        strategy.run(replica, args=(x, y))

    for x, y, global_batch in batches:
        step(tf.constant(x), tf.constant(np.asarray(y, np.int64)), tf.constant(float(global_batch), x.dtype))
    return parity.parameters(model)
