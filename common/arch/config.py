"""What every backend's ``NiN`` does before it touches its framework."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from common.arch.shapes import min_image_size
from common.arch.spec import NetSpec
from common.arch.variants import build_spec
from common.arch.weights import INITS, Weights, initial_weights


@dataclass(frozen=True)
class ModelConfig:
    spec: NetSpec
    lr: float
    image_size: int
    seed: Optional[int]
    init: str
    kwargs: dict  # the constructor's arguments, to rebuild the same model (checkpoints, conversion)

    def initial_weights(self) -> Weights:
        return initial_weights(self.spec, self.seed, self.init, self.image_size)


def model_config(lr: float = 0.1, num_classes: int = 10, in_channels: int = 1, variant: str = "chapter",
                 seed: Optional[int] = None, init: str = "xavier", image_size: int = 224) -> ModelConfig:
    """Validate NiN's arguments (same errors in every backend) and resolve its spec."""
    spec = build_spec(variant, num_classes, in_channels)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"expected lr to be a positive number, got {lr!r}")
    if init not in INITS:
        raise ValueError(f"expected init to be one of {', '.join(INITS)}, got {init!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"expected seed to be None or a non-negative integer, got {seed!r}")
    smallest = min_image_size(spec)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < smallest:
        raise ValueError(f"expected image_size to be an integer >= {smallest}, got {image_size!r}")
    kwargs = dict(lr=float(lr), num_classes=num_classes, in_channels=in_channels, variant=variant, seed=seed,
                  init=init, image_size=image_size)
    return ModelConfig(spec, float(lr), image_size, seed, init, kwargs)


def stored_config(kwargs, where: str) -> ModelConfig:
    """The ModelConfig of a model description read from a file (``where`` names it): a JSON object of
    NiN's constructor arguments, every one checked as NiN checks it."""
    import inspect

    known = list(inspect.signature(model_config).parameters)
    if not isinstance(kwargs, dict):
        raise ValueError(f"expected the model description in {where} to be an object of NiN's arguments, "
                         f"got {type(kwargs).__name__}")
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(f"expected the model description in {where} to hold NiN's arguments "
                         f"({', '.join(known)}), got unknown {', '.join(map(repr, unknown))}")
    try:
        return model_config(**kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{where}: {err}") from err
