"""One training run's settings as one typed value: ``RunConfig`` (framework-free).

``nin train``'s options, ``fit``'s keyword arguments, the command line each data-parallel worker runs and the
settings a checkpoint stores are all this one list of fields.  A ``RunConfig`` is checked when it is made (the
same one-line errors in every backend), and the settings a recipe fills (``nin_common.engine.recipes``) are
filled then: a value given wins over the recipe's.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Dict, List, Optional, Tuple

from nin_common.arch.shapes import min_image_size
from nin_common.arch.variants import build_spec
from nin_common.arch.weights import INITS
from nin_common.engine import recipes
from nin_common.engine.precision import DEVICES, check_precision
from nin_common.util.values import (check_bool, check_choice, check_fraction, check_int, check_non_negative,
                                    check_positive)

# field metadata: a place the run reads or writes, not a setting the checkpoint stores ...
PLACE = {"stored": False}
# ... and the launcher's own option, which the workers it starts are not given
LAUNCHER = {"stored": False, "worker": False}


@dataclass(frozen=True)
class RunConfig:
    """The settings of one training run, checked.  The fields left None that a recipe fixes (``epochs``,
    ``batch_size``, ``lr``, ``image_size``, ``init``, ``schedule``, ``warmup``, ``momentum``, ``nesterov``) hold the recipe's values once
    made; ``workers`` None is one per GPU the framework sees, else 1."""

    recipe: str = recipes.DEFAULT_RECIPE
    variant: str = "chapter"
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    image_size: Optional[int] = None
    limit_train: Optional[int] = None
    limit_val: Optional[int] = None
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    init: Optional[str] = None
    schedule: Optional[str] = None
    warmup: Optional[float] = None
    momentum: Optional[float] = None
    nesterov: Optional[bool] = None
    data_dir: Optional[str] = field(default=None, metadata=PLACE)
    out: Optional[str] = field(default=None, metadata=PLACE)
    resume: Optional[str] = field(default=None, metadata=PLACE)
    workers: Optional[int] = None
    port: Optional[int] = field(default=None, metadata=LAUNCHER)

    # the settings a resumed run must share with the run it continues (epochs, lr and device may change)
    FIXED_ON_RESUME: ClassVar[Tuple[str, ...]] = ("variant", "init", "seed", "batch_size", "image_size",
                                                  "limit_train", "limit_val", "precision", "schedule", "warmup",
                                                  "momentum", "nesterov")

    def __post_init__(self):
        chosen = recipes.resolve(self.recipe, **{k: getattr(self, k) for k in recipes.RECIPE_KEYS})
        checked = dict(
            epochs=check_int("epochs", chosen["epochs"]), batch_size=check_int("batch_size", chosen["batch_size"]),
            limit_train=check_int("limit_train", self.limit_train, allow_none=True),
            limit_val=check_int("limit_val", self.limit_val, allow_none=True), lr=check_positive("lr", chosen["lr"]),
            seed=check_int("seed", self.seed, least=0),
            image_size=check_int("image_size", chosen["image_size"], least=min_image_size(build_spec(self.variant))),
            init=check_choice("init", chosen["init"], INITS), device=check_choice("device", self.device, DEVICES),
            precision=check_precision(self.precision),
            schedule=check_choice("schedule", chosen["schedule"], recipes.SCHEDULES),
            warmup=check_non_negative("warmup", chosen["warmup"]),
            momentum=check_fraction("momentum", chosen["momentum"]), nesterov=check_bool("nesterov", chosen["nesterov"]))
        if checked["nesterov"] and not checked["momentum"]:
            raise ValueError(f"expected a momentum above 0 with nesterov=True, got momentum={checked['momentum']!r}")
        if self.workers is not None:
            checked["workers"] = check_int("workers", self.workers)
        if self.port is not None:
            checked["port"] = check_int("port", self.port, least=1)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """The settings a checkpoint stores (every field but the places: ``data_dir``, ``out``, ``resume``,
        ``port``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("stored", True)}

    @classmethod
    def from_dict(cls, settings: Dict[str, object]) -> "RunConfig":
        """The config of stored settings (a checkpoint's, a worker's); keys that are no field are left out."""
        return cls(**{k: v for k, v in settings.items() if k in FIELDS})

    def replace(self, **changes) -> "RunConfig":
        """This config with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def worker_flags(self) -> List[str]:
        """The ``nin train`` options that make a worker's config equal to this one (None fields are left out)."""
        argv = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("worker", True) and value is not None:
                argv += [f"--{f.name.replace('_', '-')}", str(value)]
        return argv

    def resume_conflicts(self, stored: Dict[str, object]) -> List[str]:
        """Each setting fixed on resume that differs from the ``stored`` settings of the run to continue."""
        return [f"{k}={getattr(self, k)!r} (the run has {stored[k]!r})" for k in self.FIXED_ON_RESUME
                if getattr(self, k) != stored.get(k)]


FIELDS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunConfig))
DEFAULTS: Dict[str, object] = {f.name: f.default for f in dataclasses.fields(RunConfig)}
# fit's own arguments besides the model and the config's fields: they come before ``workers``
CALL_OPTIONS = (inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=True, annotation=bool),
                inspect.Parameter("on_epoch", inspect.Parameter.KEYWORD_ONLY, default=None,
                                  annotation=Optional[Callable[[dict], None]]))


def fit_signature(first: Tuple[inspect.Parameter, ...] = ()) -> inspect.Signature:
    """The signature of ``fit`` (and of ``nin_common.engine.training.run``): ``first``, ``model``, then every field
    as a keyword, with ``progress`` and ``on_epoch`` before ``workers``."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    fields = [inspect.Parameter(f.name, keyword, default=f.default, annotation=f.type)
              for f in dataclasses.fields(RunConfig)]
    at = FIELDS.index("workers")
    model = inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
    return inspect.Signature([*first, model, *fields[:at], *CALL_OPTIONS, *fields[at:]],
                             return_annotation=List[dict])
