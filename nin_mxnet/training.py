"""Training NiN in MXNet Gluon: the framework's side of the Trainer
(``nin_common.engine.trainer``, which owns the epoch loop and ``fit``), and ``fit``."""
from __future__ import annotations

import json
import os
from typing import Optional, Tuple

import numpy as np

from .runtime import mx
from mxnet import autograd, gluon, npx

from nin_common.arch.checks import check_step
from nin_common.arch.weights import read_arrays
from nin_common.engine.precision import choose_device, resolve_precision
from nin_common.engine.trainer import Trainer as BaseTrainer
from nin_common.util.files import atomic_path

from .checkpoint import load_native, save_native
from .model import BACKEND, NiN, export_weights

OPTIMIZER_FILE = "optimizer.npz"
# why precision bf16 is refused (mxnet.contrib.amp with target_dtype="bfloat16" was tried)
NO_BF16 = ("MXNet 1.9's AMP converts only legacy operators, not the numpy-interface ones this model runs "
           "(measured: npx.convolution stays float32 under amp.init(target_dtype='bfloat16'))")


def gpu_count() -> int:
    return mx.context.num_gpus()


def select_device(device: str = "auto"):
    """``auto|cpu|gpu`` -> an MXNet context (``gpu(0)`` when chosen); ``gpu`` without one is a ValueError."""
    if isinstance(device, mx.Context):
        return device
    return mx.gpu(0) if choose_device(device, gpu_count(), BACKEND) == "gpu" else mx.cpu()


def build_model(device: str = "auto", **kwargs) -> NiN:
    """``NiN(**kwargs)`` on the device."""
    return NiN(**kwargs, ctx=select_device(device))


def _leaves(state):
    """The arrays of one parameter's optimizer state (None, an array, or nested tuples of them)."""
    if state is None:
        return []
    if isinstance(state, (tuple, list)):
        return [leaf for part in state for leaf in _leaves(part)]
    return [state]


def bf16_native(device) -> bool:
    """Never: MXNet 1.9 cannot train this model in bf16 (``NO_BF16``), so ``auto`` is fp32 everywhere."""
    return False


class Trainer(BaseTrainer, backend=BACKEND, gpu_count=gpu_count, build_model=build_model, save_native=save_native,
              load_native=load_native, export_weights=export_weights):
    """SGD on cross-entropy (plain, the chapter's optimizer, unless given a momentum; Nesterov's is Gluon's
    ``nag``) with a hybridized network, all work on the device.

    The network runs as one cached graph with static memory (``hybridize(static_alloc=True,
    static_shape=True)``).  Precision: fp32 only (``NO_BF16``); ``auto`` is fp32.
    """

    def __init__(self, model: NiN, lr: float, device: str = "auto", precision: str = "auto", group=None,
                 momentum: float = 0.0, nesterov: bool = False):
        """``group``: the data-parallel workers (``nin_mxnet.distributed.Group``): the Trainer then steps through
        their ``dist_sync`` kvstore, which sums the workers' gradients; each worker applies the update."""
        self.device = self.ctx = select_device(device)  # ctx: MXNet's name for it
        self.precision = resolve_precision(precision, bf16_native(self.ctx), BACKEND, bf16_why_not=NO_BF16)
        self.model = model
        self.group, self._broadcast = group, False
        model.collect_params().reset_ctx(self.ctx)
        model.hybridize(static_alloc=True, static_shape=True)
        optimizer, settings = ("nag" if nesterov else "sgd"), {"learning_rate": lr, "momentum": momentum}
        if group is None:
            self.trainer = gluon.Trainer(model.collect_params(), optimizer, settings, kvstore=None)
        else:  # data-parallel: the dist_sync kvstore sums the workers' gradients (nin_mxnet.distributed)
            self.trainer = gluon.Trainer(model.collect_params(), optimizer, settings, kvstore=group.kv,
                                         update_on_kvstore=False)
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.device_name = f"{self.ctx} ({'GPU' if self.ctx.device_type == 'gpu' else 'CPU'})"

    def inputs(self, images_u8: np.ndarray, labels: np.ndarray, image_size: int):
        """A uint8 (B, 28, 28) batch -> float (B, 1, S, S) in [0, 1] and labels, on the device.  Images and
        labels are checked first (``nin_common.arch.checks.check_step``): MXNet's loss takes any label."""
        images_u8, labels = check_step(self.model.spec, images_u8, labels)
        x = mx.np.array(np.asarray(images_u8)[..., None], ctx=self.ctx, dtype=np.uint8).astype(np.float32) / 255.0
        if x.shape[1] != image_size:
            x = npx.image.resize(x, size=(image_size, image_size), interp=1)  # bilinear, NHWC
        y = mx.np.array(np.asarray(labels), ctx=self.ctx, dtype=np.int32)
        return x.transpose(0, 3, 1, 2), y

    def _stats(self, logits, loss, y) -> Tuple[float, int]:
        correct = (logits.argmax(axis=1).astype(np.int32) == y).sum().astype(np.float32)
        stats = mx.np.stack([loss.sum(), correct]).asnumpy()
        return float(stats[0]), int(stats[1])

    def train_step(self, images_u8, labels, image_size: int, global_batch: Optional[int] = None) -> Tuple[float, int]:
        x, y = self.inputs(images_u8, labels, image_size)
        with autograd.record(train_mode=True):  # dropout active
            logits = self.model(x)
            loss = self.loss(logits, y)
            # with workers, this slice's share of the global batch's mean: the kvstore sums the workers' gradients
            mean = loss.mean() if self.group is None else \
                loss.sum() / (global_batch or len(y) * self.group.world.size)
        mean.backward()
        if self.group is not None:
            self.group.ended_well = False
            if not self._broadcast:  # worker 0's weights everywhere, waited for (nin_mxnet.distributed)
                from .distributed import broadcast_weights

                broadcast_weights(self.trainer)
                self._broadcast = True
        self.trainer.step(1)  # the gradient is already the batch mean
        return self._stats(logits, loss, y)

    def eval_step(self, images_u8, labels, image_size: int) -> Tuple[float, int]:
        x, y = self.inputs(images_u8, labels, image_size)
        logits = self.model(x)  # outside autograd.record: prediction mode, dropout off
        return self._stats(logits, self.loss(logits, y), y)

    def predict_step(self, images_u8, image_size: int) -> np.ndarray:
        x, _ = self.inputs(images_u8, np.zeros(len(images_u8), np.int32), image_size)
        return self.model(x).asnumpy().astype(np.float32)  # outside autograd.record: dropout off

    def prepare(self, images_u8, labels, image_size: int) -> None:
        x, y = self.inputs(images_u8, labels, image_size)
        x.wait_to_read()
        y.wait_to_read()

    def peak_memory_mb(self) -> Optional[float]:
        """On a GPU, the memory in use (MXNet's pool keeps what it allocated, so after the steps this is
        their peak); None on the CPU."""
        if self.ctx.device_type != "gpu":
            return None
        free, total = mx.context.gpu_memory_info(self.ctx.device_id)
        return (total - free) / 2**20

    def reseed(self, seed: int) -> None:
        mx.random.seed(seed, ctx="all")

    def set_lr(self, lr: float) -> None:
        self.trainer.set_learning_rate(float(lr))

    def _updater(self):
        if not self.trainer._kv_initialized:
            self.trainer._init_kvstore()
        return self.trainer._updaters[0]

    def save_state(self, folder) -> None:
        """The optimizer's per-parameter state and update counts, as arrays (no pickle)."""
        updater = self._updater()
        arrays = {f"state.{i}.{j}": leaf.asnumpy() for i, st in updater.states.items()
                  for j, leaf in enumerate(_leaves(st))}
        opt = updater.optimizer
        counts = {"num_update": opt.num_update, "index_update_count": opt._index_update_count}
        with atomic_path(os.path.join(folder, OPTIMIZER_FILE), ".npz") as tmp:
            np.savez(tmp, counts=np.array(json.dumps(counts)), **arrays)

    def load_state(self, folder) -> None:
        updater = self._updater()
        opt = updater.optimizer
        saved = read_arrays(os.path.join(folder, OPTIMIZER_FILE), "the optimizer state nin train writes")
        for i, param in enumerate(self.trainer._params):
            state = opt.create_state_multi_precision(i, param.data(self.ctx))
            for j, leaf in enumerate(_leaves(state)):
                leaf[:] = np.asarray(saved[f"state.{i}.{j}"], np.float32)  # nd (nag's) or np (sgd's) arrays alike
            updater.states[i] = state
            updater.states_synced[i] = True
        counts = json.loads(str(saved["counts"]))
        opt.num_update = counts["num_update"]
        opt._index_update_count = {int(k): v for k, v in counts["index_update_count"].items()}


fit = Trainer.fit
