"""Training NiN in PyTorch: the framework's side of the Trainer
(``nin_common.engine.trainer``, which owns the epoch loop and ``fit``), and ``fit``."""
from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from nin_common.arch.checks import check_step
from nin_common.engine.precision import choose_device, resolve_precision
from nin_common.engine.trainer import Trainer as BaseTrainer
from nin_common.util.files import atomic_path
from nin_common.util.machine import cpu_bf16, cpu_flags

from .checkpoint import load_native, read, save_native
from .model import BACKEND, NiN, export_weights

OPTIMIZER_FILE = "optimizer.pt"
# The memory layout of the model and its inputs per (device type, precision), chosen by measurement
# (docs/speed.md, "Per framework"): channels-last on a GPU, for bf16 on a CPU and for fp32 on an AVX2-only CPU;
# NCHW for fp32 on a CPU with AVX-512.
LAYOUTS = {("cuda", "bf16"): torch.channels_last, ("cuda", "fp32"): torch.channels_last,
           ("cpu", "bf16"): torch.channels_last, ("cpu", "fp32"): torch.contiguous_format,
           ("cpu", "fp32", "avx2"): torch.channels_last}


def memory_format(device_type: str, precision: str) -> torch.memory_format:
    """The layout ``LAYOUTS`` gives for the device type and precision (on a CPU without AVX-512, its AVX2 entry)."""
    if device_type == "cpu" and "avx512f" not in cpu_flags():
        return LAYOUTS.get((device_type, precision, "avx2"), LAYOUTS[(device_type, precision)])
    return LAYOUTS[(device_type, precision)]


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def select_device(device: str = "auto") -> torch.device:
    """``auto|cpu|gpu`` -> a torch device (``cuda`` when chosen); ``gpu`` without one is a ValueError."""
    if isinstance(device, torch.device):
        return device
    return torch.device("cuda" if choose_device(device, gpu_count(), BACKEND) == "gpu" else "cpu")


def build_model(device: str = "auto", **kwargs) -> NiN:
    """``NiN(**kwargs)`` on the device."""
    return NiN(**kwargs).to(select_device(device))


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 faster than fp32 (bf16 tensor cores; AVX512-BF16/AMX on a CPU)."""
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_bf16()


class Trainer(BaseTrainer, backend=BACKEND, gpu_count=gpu_count, build_model=build_model, save_native=save_native,
              load_native=load_native, export_weights=export_weights):
    """SGD on cross-entropy (plain, the chapter's optimizer, unless given a momentum), one step per call, all work on the device.

    The model and its inputs are kept in the memory layout ``memory_format`` gives for the device and precision
    (channels-last on a GPU, for bf16 on a CPU and for fp32 on an AVX2-only CPU; NCHW for fp32 on a CPU with
    AVX-512; measured).  ``bf16`` runs the network
    under ``torch.autocast`` (bfloat16 convolutions, float32 weights, optimizer and loss).
    """

    def __init__(self, model: NiN, lr: float, device: str = "auto", precision: str = "auto", group=None,
                 momentum: float = 0.0, nesterov: bool = False):
        self.device = select_device(device)
        if group is not None and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())  # this worker's GPU (LOCAL_RANK)
        self.precision = resolve_precision(precision, bf16_native(self.device), BACKEND)
        self.memory_format = memory_format(self.device.type, self.precision)
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov)
        self.group = group
        if group is not None:  # data-parallel: DDP runs the training steps (nin_torch.distributed)
            group.wrap(self.model, self.device)  # the group holds DDP (and frees it before it leaves)
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        self.device_name = f"{self.device} ({name})"

    def inputs(self, images_u8: np.ndarray, labels: np.ndarray, image_size: int):
        """A uint8 (B, 28, 28) batch -> float (B, 1, S, S) in [0, 1] (in the model's memory format) and int64
        labels, on the device.  Images and labels are checked first (``nin_common.arch.checks.check_step``)."""
        images_u8, labels = check_step(self.model.spec, images_u8, labels)
        x = torch.from_numpy(np.ascontiguousarray(images_u8)).to(self.device, non_blocking=True)
        x = x.unsqueeze(1).float().div_(255.0)
        if x.shape[-1] != image_size:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = x.contiguous(memory_format=self.memory_format)
        return x, torch.from_numpy(np.asarray(labels, np.int64)).to(self.device, non_blocking=True)

    def _compute(self):
        """The precision context the network runs in."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def prepare(self, images_u8, labels, image_size: int) -> None:
        self.inputs(images_u8, labels, image_size)
        self._sync()

    def peak_memory_mb(self) -> Optional[float]:
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None

    @staticmethod
    def _stats(logits: torch.Tensor, loss: torch.Tensor, y: torch.Tensor) -> Tuple[float, int]:
        stats = torch.stack([loss.detach() * len(y), (logits.argmax(dim=1) == y).sum().float()]).cpu()
        return float(stats[0]), int(stats[1])

    def train_step(self, images_u8, labels, image_size: int, global_batch: Optional[int] = None) -> Tuple[float, int]:
        self.model.train()
        x, y = self.inputs(images_u8, labels, image_size)
        with self._compute():
            logits = (self.model if self.group is None else self.group.wrapped)(x)
        loss = F.cross_entropy(logits.float(), y)  # this worker's mean: its figures (the loop sums them)
        objective = loss
        if self.group is not None:  # (distributed is the ``python -m`` launcher too: not imported with the package)
            from .distributed import global_mean_loss

            objective = global_mean_loss(logits.float(), y, self.group.world,
                                         global_batch or len(y) * self.group.world.size)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer.step()
        return self._stats(logits, loss, y)

    @torch.inference_mode()
    def eval_step(self, images_u8, labels, image_size: int) -> Tuple[float, int]:
        self.model.eval()
        x, y = self.inputs(images_u8, labels, image_size)
        with self._compute():
            logits = self.model(x)
        logits = logits.float()
        return self._stats(logits, F.cross_entropy(logits, y), y)

    @torch.inference_mode()
    def predict_step(self, images_u8, image_size: int) -> np.ndarray:
        self.model.eval()
        x, _ = self.inputs(images_u8, np.zeros(len(images_u8), np.int64), image_size)
        with self._compute():
            logits = self.model(x)
        return logits.float().cpu().numpy()

    def reseed(self, seed: int) -> None:
        torch.manual_seed(seed)  # CPU and every CUDA device

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = float(lr)

    def save_state(self, folder) -> None:
        with atomic_path(os.path.join(folder, OPTIMIZER_FILE), ".pt") as tmp:
            torch.save(self.optimizer.state_dict(), tmp)

    def load_state(self, folder) -> None:
        path = os.path.join(folder, OPTIMIZER_FILE)
        self.optimizer.load_state_dict(read(path, self.device, "the optimizer state nin train writes"))


fit = Trainer.fit
