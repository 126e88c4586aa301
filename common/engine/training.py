"""Training by backend name: what ``nin train`` and the tools call where they hold a backend's name, not its package.

The loop itself is the Trainer every backend subclasses (``nin_common.engine.trainer``); a run's settings are one
``RunConfig`` (``nin_common.engine.config``).  This module reaches a backend through the registry, the one place
that imports frameworks, and only once it is known that this process trains (a process that only launches
workers never imports the framework).
"""
from __future__ import annotations

import inspect
import warnings
from typing import Callable, List, Optional

from nin_common.engine import registry
from nin_common.engine.config import RunConfig, fit_signature
from nin_common.engine.trainer import (NonFiniteLoss, Trainer, check_image_size, epoch_line, epoch_seed,
                                      launch_workers)

__all__ = ["RunConfig", "NonFiniteLoss", "FIXED_ON_RESUME", "epoch_seed", "epoch_line", "check_image_size",
           "make_trainer", "evaluate", "train_epoch", "train", "run", "check_settings", "make_fit"]

# settings a resumed run must share with the run it continues (epochs, lr and device may change)
FIXED_ON_RESUME = RunConfig.FIXED_ON_RESUME


def make_trainer(backend: str, model, lr: float, device: str = "auto", precision: str = "auto", group=None):
    """The Trainer of backend ``backend`` for ``model`` (``Trainer.create``: evaluation, a benchmark)."""
    return registry.part(backend, "training").Trainer.create(model, lr, device, precision, group)


def evaluate(trainer, split, batch_size: int, image_size: int, progress: bool = True, desc: str = "eval",
             predictions: Optional[list] = None, group=None):
    """``trainer.evaluate(...)`` for any object with the Trainer's step methods (``Trainer.evaluate``)."""
    return Trainer.evaluate(trainer, split, batch_size, image_size, progress, desc, predictions, group)


def train_epoch(trainer, split, config, epoch: int, step: int, progress: bool, on_bad_loss, group=None):
    """``trainer.train_epoch(...)`` for any object with the Trainer's step methods (``Trainer.train_epoch``);
    ``config``: a RunConfig or a dict of its fields."""
    if not isinstance(config, RunConfig):
        config = RunConfig.from_dict(config)
    return Trainer.train_epoch(trainer, split, config, epoch, step, progress, on_bad_loss, group)


def train(backend: str, config: RunConfig, model=None, progress: bool = True,
          on_epoch: Optional[Callable[[dict], None]] = None) -> List[dict]:
    """Train NiN with backend ``backend`` as ``config`` says: its ``Trainer.run``.  With several workers, the
    launcher starts them without importing the framework where ``config.workers`` is given."""
    world = registry.launching(backend).environment_world()  # the framework is not imported yet
    if world is None:
        rows = launch_workers(backend, config, model, progress, lambda: registry.part(backend, "training").gpu_count())
        if rows is not None:
            return rows
    return registry.part(backend, "training").Trainer.run(config, model, progress, on_epoch)


def run(backend: str, model=None, *, progress: bool = True, on_epoch=None, **options) -> List[dict]:
    """``nin_<backend>.fit`` by backend name: the same keyword arguments (``RunConfig``'s fields)."""
    return train(backend, RunConfig(**options), model, progress, on_epoch)


run.__signature__ = fit_signature((inspect.Parameter("backend", inspect.Parameter.POSITIONAL_OR_KEYWORD),))


def check_settings(**settings) -> dict:
    """Deprecated: ``RunConfig(**settings)`` checks the settings (the same messages)."""
    warnings.warn("nin_common.engine.training.check_settings is deprecated; RunConfig(**settings) checks them",
                  DeprecationWarning, stacklevel=2)
    config = RunConfig.from_dict(settings)
    return dict(settings, lr=config.lr, warmup=config.warmup)


def make_fit(backend: str) -> Callable[..., List[dict]]:
    """Deprecated: a backend's ``fit`` is its ``Trainer.fit`` (``nin_<backend>.fit``)."""
    warnings.warn("nin_common.engine.training.make_fit is deprecated; use the backend's Trainer.fit "
                  "(nin_<backend>.fit)", DeprecationWarning, stacklevel=2)

    def fit(model=None, **settings) -> List[dict]:
        return run(backend, model, **settings)

    fit.__signature__ = fit_signature()
    fit.__doc__ = Trainer.fit.__doc__
    return fit
