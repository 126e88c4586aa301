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

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from nin_common.arch.shapes import Feature, conv_shapes, feature_shapes, layer_name, layer_params
from nin_common.arch.spec import AvgPool, Block, Dense, Dropout, Flatten, GlobalAvgPool, MaxPool, NetSpec
from nin_common.util.values import check_choice, check_int

BYTES = 4  # float32
OPTIMIZERS = {"sgd": 0, "momentum": 1, "adam": 2}  # state buffers per parameter
# What each operation's gradient needs: its input, its output, a mask the size of its output.
NEEDS = {"conv": ("input",), "dense": ("input",), "relu": ("output",), "maxpool": ("input", "output"),
         "dropout": ("mask",), "avgpool": (), "gap": (), "flatten": ()}
VIEWS = ("flatten",)  # operations whose output shares its input's memory


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
    check_int("batch_size", batch_size)
    check_choice("optimizer", optimizer, OPTIMIZERS)


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



def human(nbytes: float) -> str:
    """Bytes in binary units: 1.5 KiB, 23.4 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(nbytes) < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"  # pragma: no cover
