"""What every backend's ``NiN`` does before it touches its framework."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

from nin_common.arch import pretrained
from nin_common.arch.shapes import min_image_size
from nin_common.arch.spec import NetSpec
from nin_common.arch.variants import build_spec
from nin_common.arch.weights import INITS, Weights, initial_weights
from nin_common.util.values import check_choice, check_int, check_positive


@dataclass(frozen=True)
class ModelConfig:
    spec: NetSpec
    lr: float
    image_size: int
    seed: Optional[int]
    init: str
    kwargs: dict  # the constructor's arguments, to rebuild the same model (checkpoints, conversion)
    weights: Optional[str] = None  # the trained weights it starts from (``nin_common.arch.pretrained``), or None

    def initial_weights(self) -> Weights:
        """The weights the model starts with: the trained ones named by ``weights``, else drawn from ``seed``."""
        if self.weights is not None:
            return pretrained.load(self.weights)
        return initial_weights(self.spec, self.seed, self.init, self.image_size)


def model_config(lr: float = 0.1, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
                 variant: Optional[str] = None, seed: Optional[int] = None, init: Optional[str] = None,
                 image_size: Optional[int] = None, weights: Optional[str] = None) -> ModelConfig:
    """Validate NiN's arguments (same errors in every backend) and resolve its spec.

    An argument left None takes the chapter's value (10 classes, 1 input channel, variant ``chapter``, Xavier
    init, 224x224), or, with ``weights`` naming trained weights, the value they were trained with; an argument
    given that contradicts the weights is one line."""
    if weights is not None:
        pretrained.check_name(weights)
    fixed = pretrained.resolve(weights, variant=variant, num_classes=num_classes, in_channels=in_channels,
                               image_size=image_size, init=init)
    variant = "chapter" if fixed["variant"] is None else fixed["variant"]
    num_classes = 10 if fixed["num_classes"] is None else fixed["num_classes"]
    in_channels = 1 if fixed["in_channels"] is None else fixed["in_channels"]
    init = "xavier" if fixed["init"] is None else fixed["init"]
    image_size = 224 if fixed["image_size"] is None else fixed["image_size"]
    spec = build_spec(variant, num_classes, in_channels)
    check_positive("lr", lr)
    check_choice("init", init, INITS)
    check_int("seed", seed, least=0, allow_none=True)
    check_int("image_size", image_size, least=min_image_size(spec))
    kwargs = dict(lr=float(lr), num_classes=num_classes, in_channels=in_channels, variant=variant, seed=seed,
                  init=init, image_size=image_size)
    return ModelConfig(spec, float(lr), image_size, seed, init, kwargs, weights)


def configure(model, lr: float = 0.1, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
              variant: Optional[str] = None, seed: Optional[int] = None, init: Optional[str] = None,
              image_size: Optional[int] = None, weights: Optional[str] = None) -> ModelConfig:
    """Validate NiN's arguments and give ``model`` what every backend's model carries (the contract's
    ``Model``: config, spec, image_size, lr, num_classes, in_channels); returns the config.  Each backend's
    ``NiN.__init__`` calls it first, then builds ``net`` from ``config.spec`` in its framework.

    Deprecated: set ``self.config = model_config(...)`` and inherit the attributes from
    ``nin_common.arch.model.ConfiguredModel``, as the backends do."""
    warnings.warn("nin_common.arch.config.configure is deprecated: set model.config = model_config(...) and "
                  "inherit nin_common.arch.model.ConfiguredModel", DeprecationWarning, stacklevel=2)
    config = model_config(lr, num_classes, in_channels, variant, seed, init, image_size, weights)
    model.config, model.spec, model.image_size = config, config.spec, config.image_size
    model.lr, model.num_classes, model.in_channels = config.lr, config.spec.num_classes, config.spec.in_channels
    return config


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
