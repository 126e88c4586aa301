"""Measured memory of a NiN in PyTorch, to check ``nin_common.arch.costs`` against.

The numbers come from PyTorch's own CPU allocator: with ``profile_memory`` the profiler
records every allocation and release with the running "Total Allocated" bytes.  oneDNN's
private scratch buffers are not tensors and are not counted.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Tuple

import numpy as np
import torch
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from nin_common.arch.costs import BYTES, Execution, check_options
from nin_common.arch.shapes import batch_shape
from nin_common.engine.measure import Measured, run_measurement
from .model import DATA_FORMAT, NiN, device_of

# nn.Sequential holds a block's input until the block returns; oneDNN writes a convolution's result in its
# blocked layout, then copies it into the plain tensor.
EXECUTION = Execution(conv_outputs=2, holds_inputs=True)
HOW = "torch.profiler memory events (Total Allocated), CPU allocator"


def allocation(fn) -> Tuple[int, int]:
    """(peak, level at the end) of PyTorch's CPU allocator while ``fn()`` runs, above its level at the start."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    memory = sorted((e["ts"], e["args"]["Total Allocated"], e["args"]["Bytes"]) for e in events
                    if e.get("name") == "[memory]")
    if not memory:
        return 0, 0
    start = memory[0][1] - memory[0][2]  # the running total counts from the process's first profiling
    return max(0, max(m[1] for m in memory) - start), memory[-1][1] - start


def make_optimizer(model: NiN, optimizer: str) -> torch.optim.Optimizer:
    if optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=model.lr)
    return torch.optim.SGD(model.parameters(), lr=model.lr, momentum=0.9 if optimizer == "momentum" else 0.0)


def optimizer_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for state in opt.state.values() for t in state.values()
               if torch.is_tensor(t) and t.dim() > 0)  # not Adam's scalar step counters


def measured_memory(model: NiN, batch_size: int, image_size: int, optimizer: str = "sgd") -> Measured:
    """Memory of a training step (cross-entropy, ``optimizer``) and a prediction, measured (see Measured)."""
    check_options(batch_size, optimizer)
    if device_of(model).type != "cpu":
        raise ValueError(f"expected a model on the CPU (this measures CPU memory), got one on {device_of(model)}")
    rng = np.random.default_rng(0)
    shape = batch_shape(DATA_FORMAT, batch_size, model.in_channels, image_size)
    x = torch.from_numpy(rng.random(shape, dtype=np.float32)).to(device_of(model))
    y = torch.from_numpy(rng.integers(0, model.num_classes, batch_size)).to(device_of(model))
    opt = make_optimizer(model, optimizer)
    was_training = model.training

    def begin_step():
        model.train()
        return F.cross_entropy(model(x), y)

    def end_step(loss):
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)  # the next step allocates them again

    def predict():
        model.eval()
        with torch.no_grad():
            model(x)

    try:
        return run_measurement("torch", allocation, begin_step, end_step, predict, lambda: optimizer_bytes(opt),
                               params=sum(p.numel() for p in model.parameters()) * BYTES,
                               input_bytes=x.numel() * BYTES, grads_kept=False, how=HOW)
    finally:
        model.train(was_training)
