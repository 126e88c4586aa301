"""What a backend package provides, as code: one Protocol per module of the package, and ``check``.

A backend is a package beside ``common`` (registered once in ``nin_common.engine.registry``) with eight modules of
the same names in every backend; docs/backends.md explains each to whoever adds one.  ``check(name)`` compares a
registered backend with these Protocols (every member present, functions taking the declared parameters, the
constants agreeing with the registry); ``check_model`` checks what a built model object carries.  The contract
test (tests/test_contract.py) runs both for every registered backend.

Arrays crossing the contract are NumPy: images in the backend's ``DATA_FORMAT`` (float32), labels int64,
weights under the canonical names and layouts of ``nin_common.arch.weights`` (conv OIHW, dense (out, in)).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from nin_common.arch.config import ModelConfig
from nin_common.arch.costs import Execution
from nin_common.arch.spec import NetSpec
from nin_common.engine import registry
from nin_common.engine.measure import Measured
from nin_common.engine.trainer import Trainer as BaseTrainer

Weights = Dict[str, np.ndarray]


class Model(Protocol):
    """What ``NiN(...)`` returns in every backend, besides being its framework's model class."""

    config: ModelConfig  # the validated constructor arguments (``nin_common.arch.config.model_config``)
    spec: NetSpec        # the network as data
    image_size: int      # the input size it was built for
    lr: float
    num_classes: int
    in_channels: int
    net: Any             # the top-level layers, one per ``spec.layers`` entry, in order


class ModelModule(Protocol):
    """``<package>.model``: the network in the framework, and weights in and out."""

    BACKEND: str      # the registry name
    DATA_FORMAT: str  # "NCHW" or "NHWC", as registered

    def NiN(self, lr: float = 0.1, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
            variant: Optional[str] = None, seed: Optional[int] = None, init: Optional[str] = None,
            image_size: Optional[int] = None, weights: Optional[str] = None) -> Model: ...

    def nin_block(self, out_channels: int, kernel_size: int, strides: int, padding: int) -> Any: ...

    def layer_shapes(self, model: Model, input_shape: Sequence[int]) -> List[Tuple[str, Tuple[int, ...]]]: ...

    def predict(self, model: Model, x: np.ndarray) -> np.ndarray: ...

    def num_params(self, model: Model) -> int: ...

    def export_weights(self, model: Model) -> Weights: ...

    def import_weights(self, model: Model, weights: Weights) -> None: ...


class Trainer(Protocol):
    """``<package>.training.Trainer(model, lr, device, precision)``: one SGD step per call, on the device; a
    subclass of ``nin_common.engine.trainer.Trainer``, which runs the epoch loop and ``fit`` with these hooks.

    Steps take a uint8 batch (B, 28, 28) and int labels, scale to [0, 1] and resize to ``image_size`` on the
    device, and return ``(loss_sum, correct)`` as Python numbers (the one host-device synchronisation).
    """

    model: Model      # the model it trains
    device: Any       # the framework's device (a torch.device, a TF device string, an MXNet context, ...)
    device_name: str  # for people: "cpu (CPU)", "cuda:0 (NVIDIA H100)"
    precision: str    # "fp32" or "bf16": what ``nin_common.engine.precision.resolve_precision`` chose

    def train_step(self, images_u8: np.ndarray, labels: np.ndarray, image_size: int,
                   global_batch: Optional[int] = None) -> Tuple[float, int]:
        """One SGD step.  In a data-parallel run (a Trainer built with ``group=``) the batch is this worker's
        slice of a global batch of ``global_batch`` images: the step's gradient is that of the global batch's
        mean loss, combined by the engine; the returned figures are this worker's."""

    def eval_step(self, images_u8: np.ndarray, labels: np.ndarray, image_size: int) -> Tuple[float, int]: ...

    def predict_step(self, images_u8: np.ndarray, image_size: int) -> np.ndarray:
        """float32 logits (B, classes) of a batch through the same input pipeline, dropout off (nin evaluate's
        per-image views)."""

    def prepare(self, images_u8: np.ndarray, labels: np.ndarray, image_size: int) -> None: ...

    def peak_memory_mb(self) -> Optional[float]: ...

    def reseed(self, seed: int) -> None: ...

    def set_lr(self, lr: float) -> None: ...

    def save_state(self, folder: str) -> None: ...

    def load_state(self, folder: str) -> None: ...


class TrainingModule(Protocol):
    """``<package>.training``: the framework's side of the Trainer (``nin_common.engine.trainer``), and ``fit``."""

    def gpu_count(self) -> int: ...

    def bf16_native(self, device: Any) -> bool: ...  # whether ``auto`` picks bf16 on this (Trainer.device) device

    def build_model(self, device: str = "auto", **model_kwargs) -> Model: ...

    def Trainer(self, model: Model, lr: float, device: str = "auto", precision: str = "auto") -> Trainer: ...

    fit: Callable[..., List[dict]]  # ``Trainer.fit``


class CheckpointModule(Protocol):
    """``<package>.checkpoint``: the framework's own weight file, through ``nin_common.engine.checkpoint``."""

    def save_native(self, model: Model, path: str) -> None: ...

    def load_native(self, path: str, model: Optional[Model] = None) -> Model: ...


class ParityModule(Protocol):
    """``<package>.parity``: what ``nin_common.tools.parity`` compares across backends and the float64 reference."""

    def parity_mode(self) -> None: ...

    def as_float64(self, model: Model) -> Model: ...

    def parameters(self, model: Model) -> Weights: ...

    def layer_outputs(self, model: Model, x: np.ndarray) -> List[np.ndarray]: ...

    def loss_and_grads(self, model: Model, x: np.ndarray, y: np.ndarray) -> Tuple[float, Weights]: ...

    def sgd_step(self, model: Model, x: np.ndarray, y: np.ndarray, lr: float) -> float: ...


class ResourcesModule(Protocol):
    """``<package>.resources``: memory measured with the framework's allocator (``nin_common.engine.measure``)."""

    EXECUTION: Execution  # how the framework holds tensors, checked against the measurement
    HOW: str              # which allocator statistic it reads
    # (optional) MEASURE_ENV: environment the measuring process must start with (nin_common.engine.measure.RSS_ENV)

    def measured_memory(self, model: Model, batch_size: int, image_size: int, optimizer: str = "sgd") -> Measured: ...


class DistributedModule(Protocol):
    """``<package>.distributed``: data-parallel training through the framework's own engine
    (``nin_common.engine.distributed``, ``nin_common.engine.launch``; docs/distributed.md): how the engine's
    workers start, and what a worker does.

    Importing it imports no framework (``nin_common.engine.registry.launching`` loads it without the package), so
    that the process that launches the workers (``nin train --workers N``) never imports the framework: the
    functions a worker calls import it.  A data-parallel Trainer is ``Trainer(model, lr, device, precision,
    group=join(world))``, built (with its model) under ``group.scope()``."""

    ENGINE: str    # for people: "torch.distributed + DistributedDataParallel (gloo on a CPU, NCCL on GPUs)"
    LAUNCHER: str  # how the engine starts processes: "torchrun"
    ONE_PRECISION_PER_JOB: bool  # the engine cannot step in float64 and then float32 in one job (MXNet's kvstore)

    def environment_world(self) -> Optional[Any]:
        """The ``World`` the engine's launcher put this process in (its variables), or None when none did."""

    def launch_plan(self, workers: int, worker_argv: List[str], threads: int, port: Optional[int]) -> List[Any]:
        """The processes (``nin_common.engine.launch.Process``) that start ``workers`` workers of ``worker_argv`` on
        this machine through the engine's launcher, ``threads`` threads each, meeting at ``port`` (None: free)."""

    def worker_environment(self, workers: int, rank: int, port: int) -> Dict[str, str]:
        """The variables the engine's launcher sets for worker ``rank`` of ``workers`` meeting at 127.0.0.1:port."""

    def join(self, world: Any, device: str = "auto") -> Any:
        """Join the engine as ``world`` says, for workers training on ``device`` (auto, cpu or gpu: the transport
        may depend on it); the ``Group`` (``nin_common.engine.distributed.Group``) with its
        collectives and ``errors``, the exceptions by which the engine says another worker went away."""

    def sgd_steps(self, group: Any, model: Model, batches: List[Tuple[np.ndarray, np.ndarray]],
                  lr: float) -> Weights:
        """Plain SGD through the engine on this worker's slices of global batches (``batches``: (images in the
        backend's DATA_FORMAT at the model's dtype, labels, global batch size)), dropout off, at the model's
        precision (float64 after ``parity.as_float64``); the canonical weights after the last step (parity)."""


class RuntimeModule(Protocol):
    """``<package>.runtime``: everything the backend does to the process, in one place, each with why: what it
    does when imported (imported first by the package), the environment variables it sets, and the switches
    ``nin parity`` needs.  No other module of the package changes process-wide state."""

    ENVIRONMENT: dict  # environment variable -> why, for every one importing the backend sets

    def full_float32(self) -> None: ...


PARTS: Dict[str, type] = {"model": ModelModule, "training": TrainingModule, "checkpoint": CheckpointModule,
                          "parity": ParityModule, "resources": ResourcesModule, "runtime": RuntimeModule,
                          "distributed": DistributedModule}
# what ``import <package>`` itself offers (the README's API, the same names everywhere)
PUBLIC = ("BACKEND", "DATA_FORMAT", "NiN", "nin_block", "layer_shapes", "predict", "num_params", "export_weights",
          "import_weights", "save_native", "load_native", "Trainer", "fit")
assert set(PARTS) == set(registry.PARTS)


def _members(proto: type) -> Tuple[Dict[str, Any], Dict[str, inspect.Signature]]:
    """(data members with their annotation, methods with their signature less ``self``) of a Protocol."""
    data = dict(getattr(proto, "__annotations__", {}))
    methods = {}
    for name, value in vars(proto).items():
        if inspect.isfunction(value) and not name.startswith("_"):
            sig = inspect.signature(value)
            methods[name] = sig.replace(parameters=list(sig.parameters.values())[1:])
    return data, methods


def _required(sig: inspect.Signature) -> List[str]:
    return [p.name for p in sig.parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _fits(impl: Callable, declared: inspect.Signature) -> Optional[str]:
    """Why ``impl`` can't be called as ``declared`` says, or None."""
    try:
        sig = inspect.signature(impl)
    except (TypeError, ValueError):  # a builtin or extension type: nothing to compare
        return None
    params = list(sig.parameters.values())
    if inspect.isclass(impl):
        params = [p for p in params if p.name != "self"]
    names = [p.name for p in params]
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    missing = [n for n in declared.parameters if n not in names and not (takes_kwargs and n != "self")
               and declared.parameters[n].kind is not inspect.Parameter.VAR_KEYWORD]
    if missing:
        return f"takes no parameter(s) {', '.join(missing)}"
    extra = [p.name for p in params if p.default is p.empty and p.name not in declared.parameters
             and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if extra:
        return f"requires parameter(s) {', '.join(extra)} that the contract does not pass"
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional[:len(_required(declared))] != _required(declared):
        return f"takes {', '.join(positional)} in another order than {', '.join(_required(declared))}"
    return None


def check_module(module, proto: type) -> List[str]:
    """Every way ``module`` falls short of ``proto`` (empty when it meets it)."""
    problems = []
    data, methods = _members(proto)
    for name in data:
        if not hasattr(module, name):
            problems.append(f"{module.__name__} lacks {name}")
    for name, declared in methods.items():
        impl = getattr(module, name, None)
        if impl is None or not callable(impl):
            problems.append(f"{module.__name__} lacks the function {name}")
            continue
        why = _fits(impl, declared)
        if why:
            problems.append(f"{module.__name__}.{name} {why}")
    return problems


def check(name: str) -> List[str]:
    """Every way the registered backend ``name`` falls short of the contract (empty when it meets it)."""
    entry = registry.info(name)
    package = registry.load(name)
    problems = [f"{entry.package} lacks {attr} (its public API)" for attr in PUBLIC if not hasattr(package, attr)]
    parts = {part: registry.part(name, part) for part in PARTS}
    for part, proto in PARTS.items():
        problems += check_module(parts[part], proto)
    trainer_methods = _members(Trainer)[1]
    trainer_cls = getattr(parts["training"], "Trainer", None)
    problems += _trainer_class(entry, trainer_cls)
    for method, declared in trainer_methods.items():
        impl = getattr(trainer_cls, method, None)
        if impl is None or impl is getattr(BaseTrainer, method, None):  # the base's stub: not implemented
            problems.append(f"{entry.package}.training.Trainer lacks the method {method}")
            continue
        sig = inspect.signature(impl)
        sig = sig.replace(parameters=list(sig.parameters.values())[1:])
        if [p for p in sig.parameters] != [p for p in declared.parameters]:
            problems.append(f"{entry.package}.training.Trainer.{method} takes ({', '.join(sig.parameters)}), "
                            f"expected ({', '.join(declared.parameters)})")
    if getattr(package, "BACKEND", None) != name:
        problems.append(f"{entry.package}.BACKEND is {getattr(package, 'BACKEND', None)!r}, registered as {name!r}")
    if getattr(package, "DATA_FORMAT", None) != entry.data_format:
        problems.append(f"{entry.package}.DATA_FORMAT is {getattr(package, 'DATA_FORMAT', None)!r}, registered "
                        f"as {entry.data_format!r}")
    return problems


def _trainer_class(entry: registry.Backend, trainer_cls) -> List[str]:
    """A backend's Trainer subclasses the base Trainer, for its backend, with every function a run needs."""
    where = f"{entry.package}.training.Trainer"
    if not (isinstance(trainer_cls, type) and issubclass(trainer_cls, BaseTrainer)):
        return [f"{where} does not subclass nin_common.engine.trainer.Trainer"]
    problems = [] if trainer_cls.BACKEND == entry.name else [f"{where}.BACKEND is {trainer_cls.BACKEND!r}"]
    return problems + [f"{where} lacks the function {name} (a class argument)" for name in BaseTrainer.FUNCTIONS
                       if not callable(getattr(trainer_cls, name, None))]


def check_trainer(trainer) -> List[str]:
    """Every way a built Trainer lacks the attributes the contract's ``Trainer`` says it carries."""
    return [f"the Trainer lacks {attr}" for attr in _members(Trainer)[0] if not hasattr(trainer, attr)]


def top_level_layers(model) -> list:
    """``model.net``'s layers in order (a Keras Sequential lists them in ``.layers``; the others iterate)."""
    net = model.net
    return list(net.layers) if hasattr(net, "layers") and not callable(getattr(net, "__iter__", None)) else list(net)


def check_model(model, expected_layers: int) -> List[str]:
    """Every way a built model lacks what the contract's ``Model`` says it carries."""
    problems = [f"the model lacks {attr}" for attr in _members(Model)[0] if not hasattr(model, attr)]
    if not problems:
        if not isinstance(model.config, ModelConfig) or model.spec is not model.config.spec:
            problems.append("model.config is not the ModelConfig its spec came from")
        layers = top_level_layers(model)
        if len(layers) != expected_layers:
            problems.append(f"expected model.net to hold {expected_layers} top-level layers (one per spec "
                            f"layer), got {len(layers)}")
    return problems
