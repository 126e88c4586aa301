"""Named presets of the spec, one per question the chapter's exercises ask.

Each is a function of (num_classes, in_channels) returning a NetSpec; its docstring's first
line is the description ``nin resources`` and the docs show.  Every name works as
``NiN(variant=name)`` in all four backends.

=================  =========  ===========================================================
name               exercise   what changes against ``chapter``
=================  =========  ===========================================================
chapter            --         D2L 8.3 as printed (two 1x1 convolutions per block)
1x1-0, -1, -3      1          0, 1 or 3 1x1 convolutions per block instead of 2
3x3                2          the 1x1 convolutions become 3x3 (padding 1)
fc-head            3          global average pooling replaced by a fully connected layer
fc-head-wide       3          the last block keeps 384 channels; one fully connected layer classifies
gradual            5          the last block goes 384 -> 192 -> 96 -> classes instead of 384 -> classes
nin-vgg11/16/19    6          VGG-11/16/19's stages, every VGG convolution a NiN block
cifar10            --         Lin et al.'s CIFAR-10 network (32x32x3 input)
ceil-pool          --         Caffe's rounding-up max pooling (54 -> 27 -> 13 -> 6 at 224)
=================  =========  ===========================================================
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, Tuple

from nin_common.arch.spec import (AvgPool, Block, Conv, Dense, Dropout, Flatten, GlobalAvgPool, MaxPool, NetSpec, chapter,
                   nin_stage)
from nin_common.util.values import check_choice, check_int

# VGG's convolutions per stage (Simonyan & Zisserman, configurations A, D and E); channels 64..512.
VGG_STAGES = {11: (1, 1, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
VGG_CHANNELS = (64, 128, 256, 512, 512)


def num_1x1(count: int) -> Callable[..., NetSpec]:
    def make(num_classes: int = 10, in_channels: int = 1) -> NetSpec:
        return replace(chapter(num_classes, in_channels, num_1x1=count), name=f"1x1-{count}")
    make.__doc__ = f"The chapter's NiN with {count} 1x1 convolution(s) per block instead of 2 (exercise 1)."
    return make


def three_by_three(num_classes: int = 10, in_channels: int = 1) -> NetSpec:
    """The chapter's NiN with 3x3 convolutions (padding 1) where it has 1x1 ones (exercise 2)."""
    return replace(chapter(num_classes, in_channels, inner_kernel_size=3), name="3x3")


def fc_head(num_classes: int = 10, in_channels: int = 1) -> NetSpec:
    """Global average pooling replaced by Flatten + one fully connected layer (exercise 3).

    Only the pooling changes: the last NiN block still outputs ``num_classes`` maps (10x5x5
    at 224), and the fully connected layer maps those 250 numbers to the classes.  The head
    is built for one image size.
    """
    layers = chapter(num_classes, in_channels).layers
    return NetSpec(in_channels, layers[:-2] + (Flatten(), Dense(num_classes)), name="fc-head")


def fc_head_wide(num_classes: int = 10, in_channels: int = 1) -> NetSpec:
    """The classic head instead of NiN's (exercise 3): the last block keeps 384 channels, then Flatten + Dense.

    The last NiN block outputs 384 maps (384x5x5 = 9600 features at 224) and one fully
    connected layer does the classification, as AlexNet and VGG do after their last convolution.
    """
    layers = chapter(num_classes, in_channels).layers
    last = nin_stage(384, 3, 1, 1)
    return NetSpec(in_channels, layers[:-3] + (last, Flatten(), Dense(num_classes)), name="fc-head-wide")


def gradual_stage(in_channels: int, num_classes: int, num_convs: int = 3) -> Block:
    """The last NiN block with the channels halved at each convolution, the last one giving the classes.

    384 -> 192 -> 96 -> 10 for the chapter; a halving never goes below ``num_classes``.
    """
    channels = [max(in_channels >> (i + 1), num_classes) for i in range(num_convs - 1)] + [num_classes]
    first = Conv(channels[0], 3, 1, 1)
    return Block((first,) + tuple(Conv(c, 1) for c in channels[1:]))


def gradual(num_classes: int = 10, in_channels: int = 1) -> NetSpec:
    """The last block reduces 384 -> 192 -> 96 -> classes instead of 384 -> classes at once (exercise 5)."""
    layers = chapter(num_classes, in_channels).layers
    return NetSpec(in_channels, layers[:-3] + (gradual_stage(384, num_classes),) + layers[-2:], name="gradual")


def nin_vgg(depth: int) -> Callable[..., NetSpec]:
    stages = VGG_STAGES[depth]

    def make(num_classes: int = 10, in_channels: int = 1) -> NetSpec:
        layers: Tuple = ()
        for repeats, channels in zip(stages, VGG_CHANNELS):
            layers += tuple(nin_stage(channels, 3, 1, 1) for _ in range(repeats)) + (MaxPool(2, 2),)
        layers += (Dropout(0.5), nin_stage(num_classes, 3, 1, 1), GlobalAvgPool(), Flatten())
        return NetSpec(in_channels, layers, name=f"nin-vgg{depth}")
    make.__doc__ = (f"VGG-{depth}'s stages {stages} x 3x3 convolutions, each convolution a NiN block "
                    f"(3x3 + two 1x1), 2x2/2 max pooling; NiN's head instead of VGG's three dense layers "
                    f"(exercise 6).")
    return make


def cifar10(num_classes: int = 10, in_channels: int = 3) -> NetSpec:
    """Lin et al.'s CIFAR-10 NiN: mlpconv 192-160-96, 192-192-192, 192-192-classes on 32x32x3 images.

    As in the paper's Caffe model: 5x5, 5x5, 3x3 first convolutions (padded to keep the
    size), 3x3/2 max pooling then 3x3/2 average pooling, both rounding up (32 -> 16 -> 8),
    dropout 0.5 after each, and global average pooling over the last 8x8 maps.
    """
    return NetSpec(in_channels, (
        Block((Conv(192, 5, 1, 2), Conv(160, 1), Conv(96, 1))), MaxPool(3, 2, ceil_mode=True), Dropout(0.5),
        Block((Conv(192, 5, 1, 2), Conv(192, 1), Conv(192, 1))), AvgPool(3, 2, ceil_mode=True), Dropout(0.5),
        Block((Conv(192, 3, 1, 1), Conv(192, 1), Conv(num_classes, 1))),
        GlobalAvgPool(), Flatten(),
    ), name="cifar10")


def ceil_pool(num_classes: int = 10, in_channels: int = 1) -> NetSpec:
    """The chapter's NiN with Caffe's max pooling, which rounds up: 54 -> 27 -> 13 -> 6 at 224 (not 26, 12, 5)."""
    layers = tuple(MaxPool(l.size, l.stride, ceil_mode=True) if isinstance(l, MaxPool) else l
                   for l in chapter(num_classes, in_channels).layers)
    return NetSpec(in_channels, layers, name="ceil-pool")


VARIANTS: Dict[str, Callable[..., NetSpec]] = {
    "chapter": chapter,
    "1x1-0": num_1x1(0),
    "1x1-1": num_1x1(1),
    "1x1-3": num_1x1(3),
    "3x3": three_by_three,
    "fc-head": fc_head,
    "fc-head-wide": fc_head_wide,
    "gradual": gradual,
    "nin-vgg11": nin_vgg(11),
    "nin-vgg16": nin_vgg(16),
    "nin-vgg19": nin_vgg(19),
    "cifar10": cifar10,
    "ceil-pool": ceil_pool,
}

# The input each variant was designed for, (in_channels, image_size): what commands use by default.
DEFAULT_INPUT: Dict[str, Tuple[int, int]] = {"cifar10": (3, 32)}


def default_input(variant: str) -> Tuple[int, int]:
    """(in_channels, image_size) a variant was designed for: the chapter's (1, 224) unless it says otherwise."""
    check_variant(variant)
    return DEFAULT_INPUT.get(variant, (1, 224))


def describe(variant: str) -> str:
    """The first line of the variant's docstring."""
    check_variant(variant)
    return (VARIANTS[variant].__doc__ or variant).strip().splitlines()[0]


def check_variant(variant: str) -> None:
    check_choice("variant", variant, VARIANTS)


def build_spec(variant: str = "chapter", num_classes: int = 10, in_channels: int = 1) -> NetSpec:
    check_variant(variant)
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        check_int(name, value)
    return VARIANTS[variant](num_classes=num_classes, in_channels=in_channels)
