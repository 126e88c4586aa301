"""Resource usage of a NiN, computed from the spec alone (exercise 4).

Definitions (float32 everywhere, 4 bytes a number; "per image" numbers scale linearly with the batch):

* parameters: weights and biases of every convolution and fully connected layer.
* multiply-adds (MACs): one per weight use in a forward pass, i.e. output elements x
  (input channels x kernel area) for a convolution and in x out features for a fully connected
  layer; bias additions, ReLUs and poolings are not counted.  The chapter's NiN needs
  762,297,352 per 224x224 image.  Training costs about three times a forward pass.
* activations: the number of outputs of each top-level layer (one image).
* training memory: parameters + gradients (one per parameter) + optimizer state (none for plain
  SGD, one buffer per parameter with momentum, two for Adam) + the activations kept for the
  backward pass: every tensor some gradient needs, counted once -- the input of each
  convolution and fully connected layer (the network input included), the output of each ReLU,
  the input and output of each max pooling and the mask of each dropout.  Average poolings,
  flattening and the loss keep nothing of their own.  This is what a framework holds when its
  backward pass starts; ``nin_<backend>.resources`` measures it (PyTorch's int64 max-pool
  indices, MXNet's oneDNN pooling workspace and the padded copies of the TensorFlow backend's
  ceil-mode poolings add a little).
  The peak over a whole step adds the backward pass's temporaries: activation gradients, freed
  as the pass goes in PyTorch and TensorFlow, held to the end of the step in MXNet.
* prediction memory: parameters + the peak of live activations in a forward pass without
  gradients, walking the operations in order: the network input (held by the caller) and, at
  the worst step, one operation's input and output; an input is freed once used (flattening is
  a view and dropout is the identity when predicting).  That is the ``NEUTRAL`` execution, and
  MXNet's.  Other frameworks hold more, in ways an ``Execution`` describes
  (``nin_<backend>.resources.EXECUTION``, each checked against measurements): PyTorch holds a
  block's input until the block returns, and its oneDNN convolution writes the result in a
  blocked layout before copying it out; Keras adds the bias as a separate operation and keeps
  every layer's output until the Sequential returns.
"""
from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from common.arch.shapes import Feature, conv_shapes, feature_shapes, layer_name, layer_params
from common.arch.spec import AvgPool, Block, Dense, Dropout, Flatten, GlobalAvgPool, MaxPool, NetSpec

BYTES = 4  # float32
OPTIMIZERS = {"sgd": 0, "momentum": 1, "adam": 2}  # state buffers per parameter
# What each operation's gradient needs: its input, its output, a mask the size of its output.
NEEDS = {"conv": ("input",), "dense": ("input",), "relu": ("output",), "maxpool": ("input", "output"),
         "dropout": ("mask",), "avgpool": (), "gap": (), "flatten": ()}
VIEWS = ("flatten",)  # operations whose output shares its input's memory
# Environment a backend's memory measurement needs when its process starts (see nin_tf/resources.py).
# TensorFlow: oneDNN off, because TF switches it on by default only on CPUs with AVX512-VNNI/BF16 or AMX, and
# its oneDNN path allocates from a pool that keeps pages resident, so the resident-memory peak missed most
# activations there (measured at 99 px, batch 32: 26 MiB for a 60 MiB step) and matched on AVX2 machines.
# Without it every x86 CPU runs the same kernels and allocator (measured on AVX512-BF16: 60.7 MiB vs 60.2).
MEASURE_ENV = {"torch": {}, "mxnet": {}, "tf": {"MALLOC_MMAP_THRESHOLD_": "65536", "TF_ENABLE_ONEDNN_OPTS": "0"}}


@dataclass(frozen=True)
class Op:
    """One framework operation: a convolution and its ReLU are two."""

    layer: int  # index of the top-level layer it belongs to
    kind: str
    in_shape: Feature
    out_shape: Feature
    macs: int = 0


def ops(spec: NetSpec, image_size: int) -> List[Op]:
    """The network as a sequence of operations, with per-image shapes and multiply-adds."""
    out: List[Op] = []
    shape: Feature = (spec.in_channels, image_size, image_size)
    for i, (layer, feat) in enumerate(zip(spec.layers, feature_shapes(spec, image_size))):
        if isinstance(layer, Block):
            for conv, conv_shape in zip(layer.convs, conv_shapes(layer, shape)):
                macs = math.prod(conv_shape) * shape[0] * conv.kernel_size ** 2
                out += [Op(i, "conv", shape, conv_shape, macs), Op(i, "relu", conv_shape, conv_shape)]
                shape = conv_shape
            continue
        if isinstance(layer, Dense):
            out.append(Op(i, "dense", shape, feat, math.prod(shape) * layer.out_features))
        else:
            kind = {MaxPool: "maxpool", AvgPool: "avgpool", Dropout: "dropout", GlobalAvgPool: "gap",
                    Flatten: "flatten"}[type(layer)]
            out.append(Op(i, kind, shape, feat))
        shape = feat
    return out


def kept_for_backward(spec: NetSpec, image_size: int) -> int:
    """Numbers (per image) the backward pass needs, each tensor counted once (see the module docstring)."""
    tensor, kept, extra = 0, set(), 0  # tensor ids: 0 is the input; each non-view operation makes a new one
    sizes = {0: math.prod((spec.in_channels, image_size, image_size))}
    for op in ops(spec, image_size):
        inp = tensor
        if op.kind not in VIEWS:
            tensor += 1
            sizes[tensor] = math.prod(op.out_shape)
        needs = NEEDS[op.kind]
        kept |= {t for t, what in ((inp, "input"), (tensor, "output")) if what in needs}
        extra += math.prod(op.out_shape) if "mask" in needs else 0
    return sum(sizes[t] for t in kept) + extra


@dataclass(frozen=True)
class Execution:
    """How a framework runs a forward pass without gradients, as far as memory goes."""

    conv_outputs: int = 1  # activation-sized results a convolution writes before its ReLU (the last is kept)
    holds_inputs: bool = False  # a container holds a layer's input until the whole layer returns
    keeps_outputs: bool = False  # a container keeps every layer's output until it returns (Keras)


NEUTRAL = Execution()  # each input freed once used: the least any framework can hold


def peak_live(spec: NetSpec, image_size: int, execution: Execution = NEUTRAL) -> int:
    """Peak numbers (per image) alive during a prediction forward pass (see the module docstring).

    The network runs as nested containers, as in every backend: the top level runs the layers
    and a block runs its convolutions and ReLUs.
    """
    outer = math.prod((spec.in_channels, image_size, image_size))  # held at the top level: the input, ...
    layer_input = 0  # ... and the current layer's input, when it is not already counted in ``outer``
    peak = outer
    by_layer: Dict[int, List[Op]] = {}
    for op in ops(spec, image_size):
        if op.kind not in VIEWS and op.kind != "dropout":  # no new tensor when predicting
            by_layer.setdefault(op.layer, []).append(op)
    for i, layer_ops in sorted(by_layer.items()):
        kept, previous = 0, layer_input  # outputs kept inside the layer (Keras); the next operation's input
        for j, op in enumerate(layer_ops):
            out = math.prod(op.out_shape)
            copies = execution.conv_outputs if op.kind == "conv" else 1
            held = layer_input if execution.holds_inputs and j > 0 else 0
            peak = max(peak, outer + held + kept + previous + copies * out)
            if execution.keeps_outputs:
                kept, previous = kept + out, 0
            else:
                previous = out
        output = math.prod(layer_ops[-1].out_shape)
        if execution.keeps_outputs:
            outer, layer_input = outer + output, 0
        else:
            layer_input = output
    return peak


@dataclass(frozen=True)
class LayerRow:
    index: int
    name: str
    out_shape: Feature  # channels first, no batch axis
    params: int
    macs: int
    activations: int  # outputs per image


@dataclass(frozen=True)
class Memory:
    """Bytes, for one batch size and optimizer."""

    batch_size: int
    optimizer: str
    params: int
    grads: int
    optimizer_state: int
    activations_kept: int
    peak_activations: int

    @property
    def train(self) -> int:
        return self.params + self.grads + self.optimizer_state + self.activations_kept

    @property
    def predict(self) -> int:
        return self.params + self.peak_activations


@dataclass(frozen=True)
class Resources:
    variant: str
    in_channels: int
    image_size: int
    layers: List[LayerRow]
    memory: Memory
    totals: Dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain data for ``--json``: every number, and the training and prediction totals."""
        out = asdict(self)
        out["memory"].update(train=self.memory.train, predict=self.memory.predict)
        return out


def layer_table(spec: NetSpec, image_size: int) -> List[LayerRow]:
    """Per top-level layer: output shape, parameters, multiply-adds, activations (one image)."""
    macs = [0] * len(spec.layers)
    for op in ops(spec, image_size):
        macs[op.layer] += op.macs
    return [LayerRow(i, layer_name(layer), feat, params, mac, math.prod(feat))
            for i, (layer, feat, params, mac) in enumerate(zip(spec.layers, feature_shapes(spec, image_size),
                                                               layer_params(spec, image_size), macs))]


def check_options(batch_size: int, optimizer: str) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"expected batch_size to be a positive integer, got {batch_size!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"expected optimizer to be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")


def memory(spec: NetSpec, image_size: int = 224, batch_size: int = 128, optimizer: str = "sgd") -> Memory:
    check_options(batch_size, optimizer)
    params = sum(layer_params(spec, image_size)) * BYTES
    return Memory(batch_size, optimizer, params, params, OPTIMIZERS[optimizer] * params,
                  kept_for_backward(spec, image_size) * batch_size * BYTES,
                  peak_live(spec, image_size) * batch_size * BYTES)


def resources(spec: NetSpec, image_size: int = 224, batch_size: int = 128, optimizer: str = "sgd",
              variant: Optional[str] = None) -> Resources:
    """Everything exercise 4 asks for, for one network, image size, batch size and optimizer."""
    rows = layer_table(spec, image_size)
    totals = dict(params=sum(r.params for r in rows), macs=sum(r.macs for r in rows),
                  activations=sum(r.activations for r in rows),
                  macs_per_batch=sum(r.macs for r in rows) * batch_size)
    return Resources(variant or spec.name, spec.in_channels, image_size, rows,
                     memory(spec, image_size, batch_size, optimizer), totals)


@dataclass(frozen=True)
class Measured:
    """Memory one backend measured with its framework's own allocator statistics (bytes).

    Three windows, each after an unmeasured warm-up step and prediction: the level the
    allocator holds at the end of a training forward pass (loss computed, everything the
    backward pass needs recorded), its peak over a whole training step (forward, backward,
    update), and its peak over a prediction.  Levels and peaks are above the allocator's level
    when the window opens, so parameters, the optimizer state (created by the warm-up step) and
    the input batch, all allocated before, are added from the framework's tensors' sizes.
    """

    backend: str
    params: int
    grads: int  # one per parameter: allocated by the backward pass, or kept allocated (MXNet)
    state: int  # optimizer state, summed over the framework optimizer's buffers
    input: int
    forward_held: int
    step_peak: int
    predict_peak: int
    grads_kept: bool  # the framework keeps gradient buffers allocated between steps (MXNet)
    how: str  # which allocator statistic gave the numbers

    @property
    def kept(self) -> int:
        """Activations held when the backward pass starts, the input batch included (``activations_kept``)."""
        return self.input + self.forward_held

    @property
    def live(self) -> int:
        """Peak live activations of a prediction, the input batch included (``peak_activations``)."""
        return self.input + self.predict_peak

    @property
    def train(self) -> int:
        """Training memory as ``Memory.train`` counts it: held when the backward pass starts, plus gradients."""
        return self.params + self.grads + self.state + self.input + self.forward_held

    @property
    def step(self) -> int:
        """The peak over a whole training step, backward-pass temporaries included."""
        return self.params + self.state + self.input + (self.grads if self.grads_kept else 0) + self.step_peak

    @property
    def predict(self) -> int:
        return self.params + self.input + self.predict_peak

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(kept=self.kept, live=self.live, train=self.train, step=self.step, predict=self.predict)
        return out


def run_measurement(backend: str, allocation: Callable, begin_step: Callable, end_step: Callable,
                    predict: Callable, state: Callable[[], int], *, params: int, input_bytes: int, grads_kept: bool,
                    how: str) -> Measured:
    """The same windows in every backend.

    ``allocation(fn)`` runs ``fn()`` and returns (peak, level at the end), both in bytes above the
    allocator's level at the start; ``begin_step()`` runs a training forward pass and the loss,
    recorded for the backward pass, and returns what ``end_step(handle)`` needs for the backward
    pass and update; ``predict()`` runs a forward pass without gradients; ``state()`` sums the
    bytes of the optimizer's buffers.
    """
    def window(fn):
        gc.collect()  # tensors caught in reference cycles go now, not at a random moment inside the window
        return allocation(fn)

    end_step(begin_step())  # unmeasured: the optimizer's state and the libraries' caches come to exist
    predict()
    pending = []
    _, forward_held = window(lambda: pending.append(begin_step()))
    end_step(pending.pop())
    step_peak, _ = window(lambda: end_step(begin_step()))
    predict_peak, _ = window(predict)
    return Measured(backend, params, params, state(), input_bytes, forward_held, step_peak, predict_peak,
                    grads_kept, how)


def relative_error(measured: int, analytic: int) -> float:
    return abs(measured - analytic) / analytic


def measure_in_subprocess(backend: str, model_kwargs: dict, batch_size: int, image_size: int,
                          optimizer: str = "sgd", timeout: float = 1800) -> Measured:
    """``nin_<backend>.resources.measured_memory`` for ``NiN(**model_kwargs)`` in a fresh Python process.

    The process starts with ``MEASURE_ENV[backend]`` (glibc reads TensorFlow's setting only when
    a process starts) and without the allocations and profiler state of this one.
    """
    check_options(batch_size, optimizer)
    request = dict(backend=backend, batch_size=batch_size, image_size=image_size, optimizer=optimizer,
                   model=model_kwargs)
    env = dict(os.environ, **MEASURE_ENV.get(backend, {}))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    res = subprocess.run([sys.executable, "-c", "from common.tools.resources import _worker; _worker()",
                          json.dumps(request)], capture_output=True, text=True, env=env, timeout=timeout)
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"measuring {backend} failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")
    fields = json.loads(lines[-1])
    return Measured(**{k: fields[k] for k in Measured.__dataclass_fields__})


def _worker() -> None:  # pragma: no cover - runs in the subprocess
    request = json.loads(sys.argv[-1])
    from common.engine import registry
    backend = registry.load(request["backend"])
    measuring = registry.part(request["backend"], "resources")
    model = backend.NiN(**request["model"])
    measured = measuring.measured_memory(model, request["batch_size"], request["image_size"], request["optimizer"])
    print(json.dumps(measured.as_dict()))


def human(nbytes: float) -> str:
    """Bytes in binary units: 1.5 KiB, 23.4 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(nbytes) < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"  # pragma: no cover


def batch_shape(data_format: str, batch: int, in_channels: int, size: int) -> Tuple[int, int, int, int]:
    return (batch, in_channels, size, size) if data_format == "NCHW" else (batch, size, size, in_channels)
