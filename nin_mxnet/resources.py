"""Measured memory of a NiN in MXNet, to check ``nin_common.arch.costs`` against.

The peaks come from MXNet's own storage accounting: with ``profile_memory`` its profiler
records a "Memory: cpu/0" counter, the bytes of CPU storage in use, at every allocation and
release.  MXNet runs operators asynchronously; each window waits for all of them.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from typing import Tuple

import numpy as np
from mxnet import autograd, gluon

from nin_common.arch.costs import BYTES, Execution, check_options
from nin_common.arch.shapes import batch_shape
from nin_common.engine.measure import Measured, run_measurement
from .runtime import array, mx
from .model import DATA_FORMAT, NiN, context_of

# Gluon adds a convolution's bias inside the convolution, and each input is freed once used, a block's input
# even while the block runs.
EXECUTION = Execution()
HOW = "mxnet.profiler storage counter (Memory: cpu/0)"


_PROFILE = {"path": "", "offset": 0}
_EVENT = re.compile(r'"name": "Memory: cpu/0",\s*"cat": "[^"]*",\s*"ph": "C",\s*"ts": (\d+),\s*'
                    r'"args": \{ "Memory: cpu/0": (-?\d+) \}')
MARKER = 1 << 20  # bytes allocated first in each window, to read the counter's level


def _counter_events(fn):
    """(time, value) of every "Memory: cpu/0" event while ``fn()`` runs, in time order.

    MXNet's profiler can be configured once per process and appends each dump to its file: read
    what this window added.
    """
    if not _PROFILE["path"]:
        folder = tempfile.mkdtemp(prefix="nin-mxnet-profile-")
        atexit.register(shutil.rmtree, folder, True)
        _PROFILE["path"] = os.path.join(folder, "profile.json")
        mx.profiler.set_config(profile_memory=True, profile_imperative=True, filename=_PROFILE["path"])
    mx.nd.waitall()
    mx.profiler.set_state("run")
    try:
        fn()
        mx.nd.waitall()
    finally:
        mx.profiler.set_state("stop")
    mx.profiler.dump()
    with open(_PROFILE["path"]) as f:
        f.seek(_PROFILE["offset"])
        text = f.read()
        _PROFILE["offset"] = f.tell()
    return sorted((int(t), int(v)) for t, v in _EVENT.findall(text))


def allocation(fn) -> Tuple[int, int]:
    """(peak, level at the end) of MXNet's CPU storage while ``fn()`` runs, above its level at the start.

    The counter runs for the whole process; a marker of known size, allocated and released
    first, tells its level when the window opens.
    """
    def window():
        marker = mx.np.zeros(MARKER // BYTES, dtype="float32")
        marker.wait_to_read()
        del marker
        mx.nd.waitall()
        fn()

    values = [v for _, v in _counter_events(window)]
    start = values[0] - MARKER
    return max([0] + [v - start for v in values[2:]]), values[-1] - start


def make_trainer(model: NiN, optimizer: str) -> gluon.Trainer:
    if optimizer == "adam":
        return gluon.Trainer(model.collect_params(), "adam", {"learning_rate": model.lr})
    return gluon.Trainer(model.collect_params(), "sgd",
                         {"learning_rate": model.lr, "momentum": 0.9 if optimizer == "momentum" else 0.0})


def measured_memory(model: NiN, batch_size: int, image_size: int, optimizer: str = "sgd") -> Measured:
    """Memory of a training step (cross-entropy, ``optimizer``) and a prediction, measured (see Measured).

    The model runs imperatively (not hybridized), as it is built.  MXNet keeps its gradient
    buffers allocated between steps.
    """
    check_options(batch_size, optimizer)
    ctx = context_of(model)
    if ctx.device_type != "cpu":
        raise ValueError(f"expected a model on the CPU (this measures CPU memory), got one on {ctx}")
    rng = np.random.default_rng(0)
    x = array(rng.random(batch_shape(DATA_FORMAT, batch_size, model.in_channels, image_size), dtype=np.float32),
              ctx)
    y = array(rng.integers(0, model.num_classes, batch_size).astype(np.float32), ctx)
    trainer = make_trainer(model, optimizer)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def begin_step():
        with autograd.record():
            return loss_fn(model(x), y)

    def end_step(loss):
        loss.backward()
        trainer.step(batch_size)

    params = sum(int(np.prod(p.shape)) for p in model.collect_params().values()) * BYTES
    def state() -> int:
        return sum(_nbytes(s) for s in trainer._updaters[0].states.values())  # where Gluon keeps them

    return run_measurement("mxnet", allocation, begin_step, end_step, lambda: model(x), state, params=params,
                           input_bytes=int(np.prod(x.shape)) * BYTES, grads_kept=True, how=HOW)


def _nbytes(state) -> int:
    """Bytes of an optimizer state: None, an array, or a tuple of them."""
    if state is None:
        return 0
    if isinstance(state, (tuple, list)):
        return sum(_nbytes(s) for s in state)
    return int(np.prod(state.shape)) * BYTES
