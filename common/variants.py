"""Named presets of the spec.  Each is a function of (num_classes, in_channels) returning a NetSpec."""
from __future__ import annotations

from typing import Callable, Dict

from .spec import NetSpec, chapter

VARIANTS: Dict[str, Callable[..., NetSpec]] = {
    "chapter": chapter,
}


def build_spec(variant: str = "chapter", num_classes: int = 10, in_channels: int = 1) -> NetSpec:
    if variant not in VARIANTS:
        raise ValueError(f"expected variant to be one of {', '.join(VARIANTS)}, got {variant!r}")
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"expected {name} to be a positive integer, got {value!r}")
    return VARIANTS[variant](num_classes=num_classes, in_channels=in_channels)
