"""The NiN architecture as data.

A network is a tuple of top-level layers; each backend walks it to build its
native model, so the list of layers is written once, here.  Variants (more or
fewer 1x1 convolutions, 3x3 instead of 1x1, other heads, the paper's CIFAR net,
Caffe's ceil-mode pooling) are other values of the same data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Tuple, TypeVar, Union

from nin_common.util.values import check_int

T = TypeVar("T")


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution followed by a ReLU."""

    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0


@dataclass(frozen=True)
class Block:
    """A NiN block (the paper's mlpconv layer): convolutions, each with a ReLU."""

    convs: Tuple[Conv, ...]

    @property
    def out_channels(self) -> int:
        return self.convs[-1].out_channels


@dataclass(frozen=True)
class MaxPool:
    size: int = 3
    stride: int = 2
    ceil_mode: bool = False  # Caffe's ImageNet NiN rounds the output size up


@dataclass(frozen=True)
class AvgPool:
    """Average pooling without padding; with ``ceil_mode`` a partial last window averages only its
    in-image elements (Caffe's AVE pooling, as in the paper's CIFAR-10 network)."""

    size: int = 3
    stride: int = 2
    ceil_mode: bool = False


@dataclass(frozen=True)
class Dropout:
    rate: float = 0.5


@dataclass(frozen=True)
class GlobalAvgPool:
    """Average over all spatial positions.  NCHW backends keep (C, 1, 1); Keras gives (C,)."""


@dataclass(frozen=True)
class Flatten:
    pass


@dataclass(frozen=True)
class Dense:
    """A fully connected layer (exercise 3's head); no activation."""

    out_features: int


Layer = Union[Block, MaxPool, AvgPool, Dropout, GlobalAvgPool, Flatten, Dense]


def dispatch(table: Mapping[type, T], layer: Layer) -> T:
    """``table[type(layer)]``: what a table keyed by layer class (a backend's builders, the reference's functions)
    holds for ``layer``; a kind the table lacks is the one error every such table gives."""
    try:
        return table[type(layer)]
    except KeyError:
        raise TypeError(f"unknown layer {layer!r}") from None


@dataclass(frozen=True)
class NetSpec:
    """A whole network: its input channels and its top-level layers in order."""

    in_channels: int
    layers: Tuple[Layer, ...]
    name: str = "nin"

    @property
    def num_classes(self) -> int:
        for layer in reversed(self.layers):
            if isinstance(layer, Dense):
                return layer.out_features
            if isinstance(layer, Block):
                return layer.out_channels
        raise ValueError("spec has no layer that produces class scores")

    @property
    def blocks(self) -> Tuple[Block, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, Block))

    @property
    def param_names(self) -> Tuple[Tuple[str, ...], ...]:
        """The canonical prefix of every parameter-holding layer, parallel to ``layers``: a Block's
        convolutions are ``block{b}.conv{c}``, a Dense layer is ``dense{d}``, other layers have none.  The one
        place these names are made; weights, shapes, the reference and every backend read them here."""
        out, b, d = [], 0, 0
        for layer in self.layers:
            if isinstance(layer, Block):
                out.append(tuple(f"block{b}.conv{c}" for c in range(len(layer.convs))))
                b += 1
            elif isinstance(layer, Dense):
                out.append((f"dense{d}",))
                d += 1
            else:
                out.append(())
        return tuple(out)


def nin_stage(out_channels: int, kernel_size: int, strides: int, padding: int,
              num_1x1: int = 2, inner_kernel_size: int = 1) -> Block:
    """The chapter's ``nin_block`` as data: one kxk convolution, then ``num_1x1`` 1x1 convolutions.

    ``inner_kernel_size=3`` replaces the 1x1 convolutions by 3x3 ones (exercise 2); they are
    padded to keep the spatial size.
    """
    for name, value, low in (("out_channels", out_channels, 1), ("kernel_size", kernel_size, 1),
                             ("strides", strides, 1), ("padding", padding, 0),
                             ("num_1x1", num_1x1, 0), ("inner_kernel_size", inner_kernel_size, 1)):
        check_int(name, value, least=low, prefix="nin_block: ")
    if inner_kernel_size % 2 == 0:
        raise ValueError(f"nin_block: expected an odd inner_kernel_size, got {inner_kernel_size}")
    inner = Conv(out_channels, inner_kernel_size, 1, inner_kernel_size // 2)
    return Block((Conv(out_channels, kernel_size, strides, padding),) + (inner,) * num_1x1)


def chapter(num_classes: int = 10, in_channels: int = 1, num_1x1: int = 2,
            inner_kernel_size: int = 1, dropout: float = 0.5) -> NetSpec:
    """The NiN of D2L section 8.3 (the default preset)."""
    pool = MaxPool(3, 2)
    kw = dict(num_1x1=num_1x1, inner_kernel_size=inner_kernel_size)
    return NetSpec(in_channels, (
        nin_stage(96, 11, 4, 0, **kw), pool,
        nin_stage(256, 5, 1, 2, **kw), pool,
        nin_stage(384, 3, 1, 1, **kw), pool,
        Dropout(dropout),
        nin_stage(num_classes, 3, 1, 1, **kw),
        GlobalAvgPool(),
        Flatten(),
    ), name="chapter")

