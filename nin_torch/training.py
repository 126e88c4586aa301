"""Training NiN in PyTorch: the adapter ``common.training`` drives, and ``fit``."""
from __future__ import annotations

import os
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from common import training
from common.files import atomic_path

from .model import BACKEND, NiN

OPTIMIZER_FILE = "optimizer.pt"


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def select_device(device: str = "auto") -> torch.device:
    """``auto|cpu|gpu`` -> a torch device (``cuda`` when chosen); ``gpu`` without one is a ValueError."""
    if isinstance(device, torch.device):
        return device
    return torch.device("cuda" if training.choose_device(device, gpu_count(), BACKEND) == "gpu" else "cpu")


def build_model(device: str = "auto", **kwargs) -> NiN:
    """``NiN(**kwargs)`` on the device."""
    return NiN(**kwargs).to(select_device(device))


class Trainer:
    """Plain SGD on cross-entropy (the chapter's optimizer), one step per call, all work on the device."""

    def __init__(self, model: NiN, lr: float, device: str = "auto", precision: str = "float32"):
        self.precision = training.check_precision(precision)
        self.device = select_device(device)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        self.device_name = f"{self.device} ({name})"

    def inputs(self, images_u8: np.ndarray, labels: np.ndarray, image_size: int):
        """A uint8 (B, 28, 28) batch -> float (B, 1, S, S) in [0, 1] and int64 labels, on the device."""
        x = torch.from_numpy(np.ascontiguousarray(images_u8)).to(self.device, non_blocking=True)
        x = x.unsqueeze(1).float().div_(255.0)
        if x.shape[-1] != image_size:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return x, torch.from_numpy(np.asarray(labels, np.int64)).to(self.device, non_blocking=True)

    @staticmethod
    def _stats(logits: torch.Tensor, loss: torch.Tensor, y: torch.Tensor) -> Tuple[float, int]:
        stats = torch.stack([loss.detach() * len(y), (logits.argmax(dim=1) == y).sum().float()]).cpu()
        return float(stats[0]), int(stats[1])

    def train_step(self, images_u8, labels, image_size: int) -> Tuple[float, int]:
        self.model.train()
        x, y = self.inputs(images_u8, labels, image_size)
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return self._stats(logits, loss, y)

    @torch.no_grad()
    def eval_step(self, images_u8, labels, image_size: int) -> Tuple[float, int]:
        self.model.eval()
        x, y = self.inputs(images_u8, labels, image_size)
        logits = self.model(x)
        return self._stats(logits, F.cross_entropy(logits, y), y)

    def reseed(self, seed: int) -> None:
        torch.manual_seed(seed)  # CPU and every CUDA device

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = float(lr)

    def save_state(self, folder) -> None:
        with atomic_path(os.path.join(folder, OPTIMIZER_FILE), ".pt") as tmp:
            torch.save(self.optimizer.state_dict(), tmp)

    def load_state(self, folder) -> None:
        self.optimizer.load_state_dict(torch.load(os.path.join(folder, OPTIMIZER_FILE), map_location=self.device,
                                                  weights_only=True))


fit = training.make_fit(BACKEND)
