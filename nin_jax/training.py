"""Training NiN in JAX (Flax NNX, optax): the framework's side of the Trainer
(``nin_common.engine.trainer``, which owns the epoch loop and ``fit``), and ``fit``."""
from __future__ import annotations

import os
from functools import partial
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nin_common.arch.checks import check_step
from nin_common.arch.weights import read_arrays
from nin_common.engine.precision import choose_device, resolve_precision
from nin_common.engine.trainer import Trainer as BaseTrainer
from nin_common.util.files import atomic_path

from .checkpoint import load_native, save_native
from .model import BACKEND, NiN, export_weights

OPTIMIZER_FILE = "optimizer.npz"


def gpu_count() -> int:
    try:
        return len(jax.devices("gpu"))
    except RuntimeError:  # no GPU backend in this jaxlib (the CPU-only wheel)
        return 0


def select_device(device: str = "auto") -> jax.Device:
    """``auto|cpu|gpu`` -> a JAX device (the first GPU when chosen); ``gpu`` without one is a ValueError."""
    if isinstance(device, jax.Device):
        return device
    # this process's first device (with several processes, jax.devices() lists theirs too)
    return jax.local_devices(backend="gpu" if choose_device(device, gpu_count(), BACKEND) == "gpu" else "cpu")[0]


def to_device(model: NiN, device: jax.Device) -> NiN:
    """Move every parameter of ``model`` to ``device`` (in place); returns the model."""
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.device_put(state, device))
    return model


def build_model(device: str = "auto", **kwargs) -> NiN:
    """``NiN(**kwargs)`` with its parameters on the device."""
    return to_device(NiN(**kwargs), select_device(device))


def bf16_native(device: jax.Device) -> bool:
    """Whether ``device`` computes bf16 faster than fp32: a GPU of compute capability 8.0 or newer.

    XLA's CPU backend has no bf16 convolution kernels: it converts bf16 operands to float32, computes,
    and rounds back, so bf16 is slower there on any CPU (measured on a 2-core EPYC with AVX512-BF16, see
    docs/backends.md); ``auto`` picks fp32 on a CPU.
    """
    if device.platform != "gpu":
        return False
    capability = getattr(device, "compute_capability", None)
    return capability is not None and tuple(int(p) for p in str(capability).split(".")) >= (8, 0)


def inputs(images_u8, image_size: int):
    """A uint8 (B, 28, 28) batch -> float32 (B, S, S, 1) in [0, 1], resized bilinearly (half-pixel centres,
    as ``torch``'s ``align_corners=False`` and ``tf.image.resize``); traced inside the compiled steps."""
    x = images_u8.astype(jnp.float32)[..., None] / 255.0
    if x.shape[1] != image_size:
        x = jax.image.resize(x, (x.shape[0], image_size, image_size, 1), "bilinear")
    return x


def _stats(logits, losses, labels):
    return jnp.stack([losses.sum(), (logits.argmax(axis=1) == labels).sum().astype(jnp.float32)])


def logits(graphdef, params, x, key, bf16: bool):
    """float32 logits of the model ``graphdef`` describes with ``params`` (bf16 compute from bf16 copies)."""
    if bf16:
        params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
        x = x.astype(jnp.bfloat16)
    return nnx.merge(graphdef, params)(x, key).astype(jnp.float32)


def compile_data_parallel_step(graphdef, optimizer: optax.GradientTransformation, bf16: bool, group):
    """The training step over the global batch, sharded along the workers of ``group``'s mesh: the mean loss of
    the global batch (padding weighted 0), its gradient (XLA all-reduces it), the update; per-image losses and
    hits come back sharded, so that each worker reads its own."""
    @partial(jax.jit, static_argnames="image_size",
             out_shardings=(group.replicated, group.replicated, group.sharded, group.sharded))
    def train_step(params, opt_state, images_u8, labels, weight, count, key_data, image_size: int):
        x = inputs(images_u8, image_size)
        key = jax.random.wrap_key_data(key_data)  # raw bits across processes: a typed key cannot be made global

        def loss_fn(p):
            out = logits(graphdef, p, x, key, bf16)
            losses = optax.softmax_cross_entropy_with_integer_labels(out, labels) * weight
            return losses.sum() / count, (out, losses)

        grads, (out, losses) = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        hits = (out.argmax(axis=1) == labels).astype(jnp.float32) * weight
        return optax.apply_updates(params, updates), opt_state, losses, hits

    return train_step


def compile_steps(graphdef, optimizer: optax.GradientTransformation, bf16: bool):
    """(train step, eval step, predict step), ``jax.jit``-compiled for the model ``graphdef`` describes (closed over: it
    holds the model's description, which is not hashable, so it cannot be a static argument).

    ``bf16``: the network computes in bfloat16 from bfloat16 copies of the float32 parameters; gradients (through
    the casts), the update, the loss and the statistics stay float32.
    """
    def logits_of(params, x, key):
        return logits(graphdef, params, x, key, bf16)

    @partial(jax.jit, static_argnames="image_size", donate_argnums=(0, 1))
    def train_step(params, opt_state, images_u8, labels, key, image_size: int):
        x = inputs(images_u8, image_size)

        def loss_fn(p):
            logits = logits_of(p, x, key)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            return losses.mean(), (logits, losses)

        grads, (logits, losses) = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, _stats(logits, losses, labels)

    @partial(jax.jit, static_argnames="image_size")
    def eval_step(params, images_u8, labels, image_size: int):
        logits = logits_of(params, inputs(images_u8, image_size), None)
        return _stats(logits, optax.softmax_cross_entropy_with_integer_labels(logits, labels), labels)

    @partial(jax.jit, static_argnames="image_size")
    def predict_step(params, images_u8, image_size: int):
        return logits_of(params, inputs(images_u8, image_size), None)

    return train_step, eval_step, predict_step


@partial(jax.jit, static_argnames=("image_size",))
def _prepare(images_u8, *, image_size: int):
    return inputs(images_u8, image_size).sum()  # the sum makes the computation produce every pixel


class Trainer(BaseTrainer, backend=BACKEND, gpu_count=gpu_count, build_model=build_model, save_native=save_native,
              load_native=load_native, export_weights=export_weights):
    """SGD (``optax.sgd``: plain, the chapter's optimizer, unless given a momentum) on cross-entropy; the steps are ``jax.jit``-compiled XLA programs on the device.

    The model's parameters are taken out of it (``nnx.split``), updated functionally by the compiled step
    and put back after each step (``nnx.update``), so the model always holds the current weights.  Dropout
    draws from an explicit PRNG key, set by ``reseed`` (at each epoch start, from (seed, epoch)) and advanced
    inside the step, so a resumed run draws the same masks.  ``bf16``: bfloat16 compute from bfloat16 copies
    of the float32 master weights, float32 gradients, update, loss and metrics.
    """

    def __init__(self, model: NiN, lr: float, device: str = "auto", precision: str = "auto", group=None,
                 momentum: float = 0.0, nesterov: bool = False):
        self.device = select_device(device)
        self.group = group
        self.precision = resolve_precision(precision, bf16_native(self.device), BACKEND)
        self.model = to_device(model, self.device)
        self.graphdef, self.params = nnx.split(model, nnx.Param)[:2]
        self.optimizer = optax.inject_hyperparams(optax.sgd, static_args=("momentum", "nesterov"))(
            learning_rate=lr, momentum=momentum or None, nesterov=nesterov)
        self.opt_state = jax.device_put(self.optimizer.init(self.params), self.device)
        self.key = jax.device_put(jax.random.key(0), self.device)
        self._train, self._eval, self._predict = compile_steps(self.graphdef, self.optimizer,
                                                               self.precision == "bf16")
        self.device_name = f"{self.device} ({getattr(self.device, 'device_kind', self.device.platform)})"
        if group is not None:  # data-parallel: one global step over the workers' mesh (nin_jax.distributed)
            self._train_global = compile_data_parallel_step(self.graphdef, self.optimizer, self.precision == "bf16",
                                                            group)

    def _batch(self, images_u8, labels):
        """The batch on the device, checked first (``nin_common.arch.checks.check_step``)."""
        images_u8, labels = check_step(self.model.spec, images_u8, labels)
        return (jax.device_put(np.asarray(images_u8, np.uint8), self.device),
                jax.device_put(np.asarray(labels, np.int32), self.device))

    @staticmethod
    def _result(stats) -> Tuple[float, int]:
        stats = np.asarray(stats)
        return float(stats[0]), int(stats[1])

    def _sync_params(self) -> None:
        """Take the model's current parameters (they may have been loaded or imported since)."""
        self.params = nnx.state(self.model, nnx.Param)

    def train_step(self, images_u8, labels, image_size: int, global_batch: Optional[int] = None) -> Tuple[float, int]:
        if self.group is not None:
            return self._global_step(images_u8, labels, image_size, global_batch or len(labels) * self.group.world.size)
        x, y = self._batch(images_u8, labels)
        self.key, step_key = jax.random.split(self.key)
        self._sync_params()
        self.params, self.opt_state, stats = self._train(self.params, self.opt_state, x, y, step_key,
                                                         image_size=int(image_size))
        nnx.update(self.model, self.params)
        return self._result(stats)

    def _global_step(self, images_u8, labels, image_size: int, global_batch: int) -> Tuple[float, int]:
        """This worker's slice as its shard of the global batch; this worker's figures."""
        from .distributed import padded

        images_u8, labels = check_step(self.model.spec, images_u8, labels)
        group = self.group
        images, y, weight = padded(np.asarray(images_u8, np.uint8), np.asarray(labels, np.int32), group.world,
                                   global_batch)
        self.key, step_key = jax.random.split(self.key)
        self._sync_params()
        params, opt_state = group.replicate((self.params, self.opt_state))
        xg, yg, wg = group.shard((images, y, weight))
        params, opt_state, losses, hits = self._train_global(
            params, opt_state, xg, yg, wg, jnp.asarray(global_batch, jnp.float32),
            group.replicate(jax.random.key_data(step_key)),
            image_size=int(image_size))
        self.params, self.opt_state = group.local((params, opt_state))
        nnx.update(self.model, self.params)
        return float(np.asarray(group.local(losses)).sum()), int(np.asarray(group.local(hits)).sum())

    def eval_step(self, images_u8, labels, image_size: int) -> Tuple[float, int]:
        x, y = self._batch(images_u8, labels)
        self._sync_params()
        return self._result(self._eval(self.params, x, y, image_size=int(image_size)))

    def predict_step(self, images_u8, image_size: int) -> np.ndarray:
        """Logits (B, num_classes) of a uint8 batch, dropout off, as float32 NumPy."""
        x, _ = self._batch(images_u8, np.zeros(len(images_u8), np.int64))
        self._sync_params()
        return np.asarray(self._predict(self.params, x, image_size=int(image_size)), np.float32)

    def prepare(self, images_u8, labels, image_size: int) -> None:
        x, y = self._batch(images_u8, labels)
        _prepare(x, image_size=int(image_size)).block_until_ready()
        y.block_until_ready()

    def peak_memory_mb(self) -> Optional[float]:
        if self.device.platform != "gpu":
            return None
        stats = self.device.memory_stats() or {}
        return stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None

    def reseed(self, seed: int) -> None:
        """Dropout's PRNG key, from ``seed`` (``nin_common.engine.training.epoch_seed`` gives it per epoch).  With
        several workers every one takes rank 0's seed: the key of a global step must be the same everywhere, and
        the masks are drawn for the global batch (``nin_jax.distributed``)."""
        if self.group is not None:
            seed = self.group.same_everywhere(seed)
        self.key = jax.device_put(jax.random.key(seed), self.device)

    def set_lr(self, lr: float) -> None:
        self.opt_state.hyperparams["learning_rate"] = jax.device_put(jnp.asarray(lr, jnp.float32), self.device)

    def _leaves(self):
        return jax.tree_util.tree_flatten_with_path(self.opt_state)[0]

    def save_state(self, folder) -> None:
        """The optimizer's state (step count, learning rate, the momentum's trace if any), as arrays (no pickle)."""
        leaves = self._leaves()
        names = np.array([jax.tree_util.keystr(path) for path, _ in leaves])
        with atomic_path(os.path.join(folder, OPTIMIZER_FILE), ".npz") as tmp:
            np.savez(tmp, names=names, **{f"{i}": np.asarray(leaf) for i, (_, leaf) in enumerate(leaves)})

    def load_state(self, folder) -> None:
        leaves = self._leaves()
        path = os.path.join(folder, OPTIMIZER_FILE)
        saved = read_arrays(path, "the optimizer state nin train writes")
        names = [jax.tree_util.keystr(key) for key, _ in leaves]
        expected = {"names"} | {f"{i}" for i in range(len(leaves))}
        if set(saved) != expected or list(saved["names"]) != names:
            raise ValueError(f"expected {path} to hold the optimizer state {names}, got "
                             f"{list(saved.get('names', sorted(saved)))}")
        values = [jax.device_put(jnp.asarray(saved[f"{i}"], leaf.dtype), self.device)
                  for i, (_, leaf) in enumerate(leaves)]
        self.opt_state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(self.opt_state), values)


fit = Trainer.fit
