"""Training NiN in TensorFlow Keras: the framework's side of the Trainer
(``nin_common.engine.trainer``, which owns the epoch loop and ``fit``), and ``fit``."""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow import keras

from nin_common.arch.checks import check_step
from nin_common.arch.weights import read_arrays
from nin_common.engine.precision import choose_device, resolve_precision
from nin_common.engine.trainer import Trainer as BaseTrainer
from nin_common.util.files import atomic_path
from nin_common.util.machine import cpu_bf16

from .distributed import engine_errors, replica_loss
from .checkpoint import load_native, save_native
from .model import BACKEND, NiN, export_weights

OPTIMIZER_FILE = "optimizer.npz"


def gpu_count() -> int:
    return len(tf.config.list_physical_devices("GPU"))


def select_device(device: str = "auto") -> str:
    """``auto|cpu|gpu`` -> a TensorFlow device name (``/GPU:0`` when chosen); ``gpu`` without one is a ValueError."""
    if isinstance(device, str) and device.startswith("/"):
        return device
    return "/GPU:0" if choose_device(device, gpu_count(), BACKEND) == "gpu" else "/CPU:0"


def build_model(device: str = "auto", **kwargs) -> NiN:
    """``NiN(**kwargs)`` with its variables on the device."""
    with tf.device(select_device(device)):
        return NiN(**kwargs)


def bf16_native(device: str) -> bool:
    """Whether ``device`` computes bf16 faster than fp32 (a GPU of compute capability 8.0 or newer; a CPU
    with AVX512-BF16/AMX, which oneDNN uses)."""
    if "GPU" not in device:
        return cpu_bf16()
    gpus = tf.config.list_physical_devices("GPU")
    index = int(device.rsplit(":", 1)[-1])
    capability = tf.config.experimental.get_device_details(gpus[index]).get("compute_capability") if gpus else None
    return capability is not None and tuple(capability) >= (8, 0)


@contextmanager
def compute_policy(model: NiN, policy: Optional[str]):
    """Every layer of ``model`` computes under the Keras dtype ``policy`` inside the block (None: unchanged).

    Graphs traced inside keep that precision; the variables stay float32 (``mixed_bfloat16`` casts them
    on use), so the weights exported, saved and updated are the float32 master weights.
    """
    if policy is None:
        yield
        return
    layers = list(model._flatten_layers(include_self=True, recursive=True))
    before = [layer.dtype_policy for layer in layers]
    try:
        for layer in layers:
            layer.dtype_policy = policy
        yield
    finally:
        for layer, old in zip(layers, before):
            layer.dtype_policy = old


class Trainer(BaseTrainer, backend=BACKEND, gpu_count=gpu_count, build_model=build_model, save_native=save_native,
              load_native=load_native, export_weights=export_weights):
    """SGD on cross-entropy (plain, the chapter's optimizer, unless given a momentum); the steps are ``tf.function`` graphs on the device.

    The network is called with ``training=True`` in the training step, so its dropout runs (the chapter's
    TensorFlow trainer omits it, and its dropout never runs).  ``bf16`` traces the network under Keras'
    ``mixed_bfloat16`` policy: bfloat16 compute, float32 variables, optimizer, loss and metrics.

    ``group`` (``nin_tf.distributed.join``): a data-parallel worker.  The Trainer and its model are built under
    ``group.scope()`` (mirrored variables); each training step runs through ``strategy.run`` on this worker's
    slice, with its share of the global batch's mean loss (``distributed.replica_loss``), and the optimizer sums
    the replicas' gradients over the workers.  Evaluation and prediction read the worker's copy of the weights.
    """

    def __init__(self, model: NiN, lr: float, device: str = "auto", precision: str = "auto", group=None,
                 momentum: float = 0.0, nesterov: bool = False):
        self.device = select_device(device)
        self.precision = resolve_precision(precision, bf16_native(self.device), BACKEND)
        self.policy = "mixed_bfloat16" if self.precision == "bf16" else None
        self.model = model
        self.group = group
        with self._placed(), (group.scope() if group is not None else nullcontext()):
            self.optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=momentum, nesterov=nesterov)
            self.optimizer.build(model.trainable_variables)
        self.seed_states = [v for v in model.variables if v.name == "seed_generator_state"]  # dropout's RNG
        self._train = tf.function(self._train_graph if group is None else self._replicated_train_graph,
                                  reduce_retracing=True)
        self._eval = tf.function(self._eval_graph, reduce_retracing=True)
        self._predict = tf.function(
            lambda images_u8, size: tf.cast(self.model(self.inputs(images_u8, size), training=False), tf.float32),
            reduce_retracing=True)
        self._prepare = tf.function(lambda images_u8, size: tf.reduce_sum(self.inputs(images_u8, size)),
                                    reduce_retracing=True)  # the sum makes the graph compute every pixel
        self.device_name = f"{self.device} ({'GPU' if 'GPU' in self.device else 'CPU'})"

    @staticmethod
    def inputs(images_u8, image_size: int):
        """A uint8 (B, 28, 28) batch -> float (B, S, S, 1) in [0, 1] (inside the graph, on the device)."""
        x = tf.cast(images_u8, tf.float32)[..., None] / 255.0
        if x.shape[1] != image_size:
            x = tf.image.resize(x, (image_size, image_size), method="bilinear")
        return x

    @staticmethod
    def _stats(logits, losses, y):
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1), y), tf.float32))
        return tf.stack([tf.reduce_sum(losses), correct])

    def _gradients(self, images_u8, labels, image_size: int, reduce):
        """The gradients of ``reduce(per-image losses)`` (dropout active), and the batch's stats."""
        x = self.inputs(images_u8, image_size)
        with tf.GradientTape() as tape:
            logits = tf.cast(self.model(x, training=True), tf.float32)
            losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            loss = reduce(losses)
        return tape.gradient(loss, self.model.trainable_variables), self._stats(logits, losses, labels)

    def _train_graph(self, images_u8, labels, image_size: int):
        grads, stats = self._gradients(images_u8, labels, image_size, tf.reduce_mean)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return stats

    def _replica_grads_graph(self, images_u8, labels, image_size: int, global_batch):
        """A worker's gradients of its share of the global batch's mean loss, and its stats."""
        return self._gradients(images_u8, labels, image_size, lambda losses: replica_loss(losses, global_batch))

    def _replicated_train_graph(self, images_u8, labels, image_size: int, global_batch):
        """One step of a data-parallel worker: its slice through ``strategy.run`` (one replica per worker)."""
        strategy = self.group.strategy

        def replica(images_u8, labels):
            grads, stats = self._replica_grads_graph(images_u8, labels, image_size, global_batch)
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))  # summed over workers
            return stats

        return strategy.experimental_local_results(strategy.run(replica, args=(images_u8, labels)))[0]

    def _eval_graph(self, images_u8, labels, image_size: int):
        logits = tf.cast(self.model(self.inputs(images_u8, image_size), training=False), tf.float32)
        return self._stats(logits, keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True),
                           labels)

    def _placed(self):
        """The device block the steps run in (a worker's strategy places its replica itself)."""
        return tf.device(self.device) if self.group is None else nullcontext()

    def _run(self, graph, images_u8, labels, image_size: int, *extra) -> Tuple[float, int]:
        images_u8, labels = check_step(self.model.spec, images_u8, labels)
        with self._placed(), compute_policy(self.model, self.policy), \
                (engine_errors() if self.group is not None else nullcontext()):
            stats = graph(tf.constant(np.asarray(images_u8, np.uint8)), tf.constant(np.asarray(labels, np.int64)),
                          int(image_size), *extra).numpy()
        return float(stats[0]), int(stats[1])

    def train_step(self, images_u8, labels, image_size: int, global_batch: Optional[int] = None) -> Tuple[float, int]:
        if self.group is None:
            return self._run(self._train, images_u8, labels, image_size)
        global_batch = global_batch or len(labels) * self.group.world.size
        return self._run(self._train, images_u8, labels, image_size, tf.constant(float(global_batch), tf.float32))

    def eval_step(self, images_u8, labels, image_size: int) -> Tuple[float, int]:
        return self._run(self._eval, images_u8, labels, image_size)

    def predict_step(self, images_u8, image_size: int) -> np.ndarray:
        with self._placed(), compute_policy(self.model, self.policy):
            return self._predict(tf.constant(np.asarray(images_u8, np.uint8)), int(image_size)).numpy()

    def prepare(self, images_u8, labels, image_size: int) -> None:
        with self._placed():
            tf.constant(np.asarray(labels, np.int64))
            self._prepare(tf.constant(np.asarray(images_u8, np.uint8)), int(image_size)).numpy()

    def peak_memory_mb(self) -> Optional[float]:
        if "GPU" not in self.device:
            return None
        return tf.config.experimental.get_memory_info(self.device.lstrip("/"))["peak"] / 2**20

    def reseed(self, seed: int) -> None:
        """Re-seed every dropout layer's seed generator (Keras 3 keeps one state variable per layer)."""
        for i, state in enumerate(self.seed_states):
            state.assign(tf.constant([seed + i, 0], dtype=state.dtype))

    def set_lr(self, lr: float) -> None:
        self.optimizer.learning_rate.assign(float(lr))

    def save_state(self, folder) -> None:
        """The optimizer's variables (iteration count, learning rate, slots), as arrays (no pickle)."""
        arrays = {f"{i}": v.numpy() for i, v in enumerate(self.optimizer.variables)}
        names = np.array([v.path for v in self.optimizer.variables])
        with atomic_path(os.path.join(folder, OPTIMIZER_FILE), ".npz") as tmp:
            np.savez(tmp, names=names, **arrays)

    def load_state(self, folder) -> None:
        saved = read_arrays(os.path.join(folder, OPTIMIZER_FILE), "the optimizer state nin train writes")
        variables = self.optimizer.variables
        if len(saved["names"]) != len(variables):
            raise ValueError(f"optimizer state in {folder} has {len(saved['names'])} variables, "
                             f"this optimizer {len(variables)}")
        for i, v in enumerate(variables):
            v.assign(saved[f"{i}"])


fit = Trainer.fit
