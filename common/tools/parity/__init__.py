"""Numerical parity across the backends and against the float64 reference, written once.

Every backend package has a ``parity`` module with the same functions, which this harness
drives; it converts layouts itself, so each comparison is between canonical arrays:

- ``parity_mode()``: full float32 on a GPU (TF32 off);
- ``as_float64(model)``: a float64 copy of a model, with the same weights;
- ``parameters(model)``: every parameter under its canonical name and layout, at the model's precision;
- ``layer_outputs(model, x)``: every top-level layer's output, backend layout, evaluation mode;
- ``loss_and_grads(model, x, y)``: mean softmax cross-entropy (dropout disabled) and the gradient
  of every parameter under its canonical name and layout, at the model's precision;
- ``sgd_step(model, x, y, lr)``: one plain SGD step; returns the loss before it.

The forward and layer checks run the float32 models.  The gradient, SGD-step and trajectory
checks (``grad_dtype``) run float64 copies, the float32 models, or both:

- float64: the backends against each other.  In float64 the frameworks compute the same function to ~1e-14,
  so any real difference in the loss, the gradients or the update shows at once (tolerance 1e-4).
- float32: each backend's float32 loss, gradients, step and trajectory against its own float64 copy, within a
  bound derived per tensor (per step for trajectories) from how far the float64 result itself moves when every
  weight is moved by about one float32 ulp (``nudge``).  A float32 kernel computes, at best, the exact result of
  inputs off by a few roundings (backward error analysis); the float64 result's spread over ``DRAWS`` such
  nudges measures what that can cost here, kinks included: a ReLU input within rounding of 0 is gated either way
  by float32 and by the nudges alike, and every gradient upstream of it then moves by that input's whole
  contribution (~1e-3 relative in the first blocks for some batches, with no bug anywhere).  The bound is twice
  the widest spread (two rounding paths of the same kind) plus one float32 rounding of the result's largest
  element: ``max|r32 - r64| <= 2 * max_d max|r64(nudged_d) - r64| + eps32 * max|r64|``.  A kernel that drifts
  (reduced-precision accumulation, TF32 or bf16 inside float32, a wrong gradient) moves the result by far more
  than that wherever no kink sits, which is almost every tensor.

A difference is the largest element-wise absolute difference ``max|a - b|`` (never sorted, never
signed), and its relative error that divided by a scale named with each check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import combinations
from types import ModuleType
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nin_common.arch import reference
from nin_common.arch import spec as S
from nin_common.arch.config import model_config
from nin_common.arch.shapes import array_to_layout, feature_shapes, layer_name
from nin_common.arch.weights import Weights
from nin_common.engine import registry
from nin_common.util.progress import bar as progress_bar

CHECKS = ("forward", "layers", "grads", "steps")
PAIRWISE = ("grads", "steps")  # checks that compare backends with each other only
GRAD_CHECKS = ("grads", "steps")  # checks run at ``grad_dtype``; forward and layers run in float32
GRAD_DTYPES = ("float64", "float32", "both")
EPS32 = float(np.finfo(np.float32).eps)
DRAWS = 3  # nudged float64 runs that measure a float32 bound
REFERENCE = "reference"
ONNX = "onnxruntime"  # ONNX Runtime running the graph nin_common.tools.onnx_graph builds (forward and layers checks)
ONNX_CHECKS = ("forward", "layers")

# Relative tolerances (of max|reference| for outputs; of the larger side's max|.| otherwise).
TOLERANCE = {"forward": 1e-5, "layers": 1e-5, "loss": 1e-4, "grads": 1e-4, "sgd step": 1e-4, "steps": 1e-3}
CHECK_TEXT = {"forward": "forward (logits)", "layers": "layer outputs", "loss": "loss",
              "grads": "gradients", "sgd step": "weights after 1 SGD step", "steps": "losses over SGD steps"}

Batch = Tuple[np.ndarray, np.ndarray]  # NCHW float32 images, int64 labels


@dataclass(frozen=True)
class Diff:
    """One comparison: ``max_abs = max|a - b|`` over all elements, ``rel = max_abs / scale``."""

    pair: str
    check: str
    item: str
    max_abs: float
    rel: float
    tol: float
    note: str = ""  # what may explain a failure

    @property
    def passed(self) -> bool:
        return bool(self.rel <= self.tol)  # NaN fails


@dataclass(frozen=True)
class Row:
    """One line of the report: a check for a pair, its worst difference, and where it is."""

    pair: str
    check: str
    max_abs: float
    rel: float
    tol: float
    passed: bool
    where: str


def abs_diff(pair: str, check: str, item: str, a, b, scale: float, tol: float, note: str = "") -> Diff:
    """Element-wise absolute difference of two arrays of the same shape, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{pair}, {check} {item}: expected arrays of the same shape, got {a.shape} and {b.shape}")
    max_abs = float(np.abs(a - b).max()) if a.size else 0.0
    if math.isnan(max_abs) or not (np.isfinite(a).all() and np.isfinite(b).all()):
        max_abs = math.nan
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    return Diff(pair, check, item, max_abs, rel, tol, note)


def peak(*arrays) -> float:
    """The largest absolute value over some arrays (the scale of a relative error)."""
    return max(float(np.abs(np.asarray(a, np.float64)).max()) if np.size(a) else 0.0 for a in arrays)


def output_to_canonical(out: np.ndarray, layer: S.Layer, feature: Tuple[int, ...], feature_in: Tuple[int, ...],
                 data_format: str) -> np.ndarray:
    """A layer's output from a backend's layout to the canonical one (the reference's).

    ``feature``/``feature_in`` are the layer's canonical output/input shapes without the batch axis.
    NHWC maps become NCHW; Keras's (N, C) after global pooling becomes (N, C, 1, 1); a Keras Flatten
    of an (H, W, C) map is reordered to C, H, W.
    """
    out = np.asarray(out)
    n = out.shape[0]
    if data_format != "NHWC":
        return out
    if len(feature) == 3:
        return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out.reshape((n,) + tuple(feature))
    if isinstance(layer, S.Flatten) and len(feature_in) == 3:
        c, h, w = feature_in
        return out.reshape(n, h, w, c).transpose(0, 3, 1, 2).reshape(n, -1)
    return out


def make_batches(spec: S.NetSpec, image_size: int, batch: int, seed: int, count: int = 1) -> List[Batch]:
    """``count`` batches of images in [0, 1) and labels, drawn with NumPy from ``seed``."""
    rng = np.random.default_rng([seed, 1])  # a stream apart from the weights' (drawn from ``seed``)
    return [(rng.random((batch, spec.in_channels, image_size, image_size), dtype=np.float32),
             rng.integers(0, spec.num_classes, batch)) for _ in range(count)]


def build_models(mods: Sequence[ModuleType], weights: Weights, **kwargs) -> Dict[str, object]:
    """One model per backend (``NiN(**kwargs)``), each holding exactly ``weights``."""
    models = {}
    for mod in mods:
        models[mod.BACKEND] = model = mod.NiN(**kwargs)
        mod.import_weights(model, weights)
    return models


def hooks(mod: ModuleType) -> ModuleType:
    """A backend's ``parity`` module (``nin_torch.parity``, ...)."""
    return registry.part(mod.BACKEND, "parity")


def float64_models(mods: Sequence[ModuleType], models: Mapping[str, object]) -> Dict[str, object]:
    """A float64 copy of every backend's (float32) model, holding the same weights."""
    return {m.BACKEND: hooks(m).as_float64(models[m.BACKEND]) for m in mods}


def _pairs(mods: Sequence[ModuleType]):
    return list(combinations(mods, 2))


def _name(a, b) -> str:
    return f"{a.BACKEND} vs {b if isinstance(b, str) else b.BACKEND}"


def forward_diffs(mods, models, spec: S.NetSpec, weights: Weights, x: np.ndarray) -> List[Diff]:
    """``predict`` of every backend against the float64 reference and against each other."""
    ref = reference.forward(spec, weights, x)
    out = {m.BACKEND: m.predict(models[m.BACKEND], array_to_layout(x, m.DATA_FORMAT)) for m in mods}
    scale, tol = peak(ref), TOLERANCE["forward"]
    diffs = [abs_diff(_name(m, REFERENCE), "forward", "logits", out[m.BACKEND], ref, scale, tol) for m in mods]
    return diffs + [abs_diff(_name(a, b), "forward", "logits", out[a.BACKEND], out[b.BACKEND], scale, tol)
                    for a, b in _pairs(mods)]


def layer_diffs(mods, models, spec: S.NetSpec, weights: Weights, x: np.ndarray) -> List[Diff]:
    """Every top-level layer's output, in network order, against the reference and across backends.

    Each layer is scaled by its own max|reference|, so the first failing item is the first layer
    that diverges.
    """
    refs = reference.layer_outputs(spec, weights, x)
    feats = feature_shapes(spec, x.shape[2], x.shape[3])
    inputs = [tuple(x.shape[1:])] + feats[:-1]
    outs = {}
    for m in mods:
        native = hooks(m).layer_outputs(models[m.BACKEND], array_to_layout(x, m.DATA_FORMAT))
        outs[m.BACKEND] = [output_to_canonical(o, layer, f, fi, m.DATA_FORMAT)
                           for o, layer, f, fi in zip(native, spec.layers, feats, inputs)]
    diffs, tol = [], TOLERANCE["layers"]
    sides = [(m, REFERENCE) for m in mods] + _pairs(mods)
    for a, b in sides:
        for i, (layer, ref) in enumerate(zip(spec.layers, refs)):
            other = ref if b == REFERENCE else outs[b.BACKEND][i]
            diffs.append(abs_diff(_name(a, b), "layers", f"layer {i} ({layer_name(layer)})", outs[a.BACKEND][i],
                                 other, peak(ref), tol))
    return diffs


def onnx_diffs(check: str, spec: S.NetSpec, weights: Weights, x: np.ndarray) -> List[Diff]:
    """ONNX Runtime against the float64 reference: the graph ``nin convert --to onnx`` writes, with the same
    weights, run on the same batch (logits, or every top-level layer's output, each scaled by its own peak)."""
    from nin_common.tools import onnx_graph

    model = onnx_graph.build(spec, weights, x.shape[2], layer_outputs=True)
    pair, tol = f"{ONNX} vs {REFERENCE}", TOLERANCE[check]
    if check == "forward":
        ref = reference.forward(spec, weights, x)
        return [abs_diff(pair, "forward", "logits", onnx_graph.predict(model, x), ref, peak(ref), tol)]
    refs = reference.layer_outputs(spec, weights, x)
    outs = onnx_graph.layer_outputs(model, x, len(spec.layers))
    return [abs_diff(pair, "layers", f"layer {i} ({layer_name(layer)})", out, ref, peak(ref), tol)
            for i, (layer, out, ref) in enumerate(zip(spec.layers, outs, refs))]


def _param_diffs(pair: str, check: str, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
                 note: str = "") -> List[Diff]:
    return [abs_diff(pair, check, name, a[name], b[name], peak(a[name], b[name]), TOLERANCE[check], note)
            for name in a]


def float32_lr(lr: float) -> float:
    """The learning rate every backend is given: ``lr`` rounded to float32.

    MXNet's SGD holds it as a float32 parameter and Keras's as a float32 variable; giving PyTorch
    the same value makes every backend take the very same step in float64 (0.05 would otherwise
    differ by 1.5e-8 relative).
    """
    return float(np.float32(lr))


def grad_diffs(mods, results: Mapping[str, tuple], spec: S.NetSpec, weights: Weights, batch: Batch) -> List[Diff]:
    """The loss (also against the reference's), every gradient, and the weights after one SGD step: the float64
    ``results`` of ``exact_results`` against each other."""
    x, y = batch
    ref_loss = reference.cross_entropy(reference.forward(spec, weights, x), y)
    diffs = [abs_diff(_name(m, REFERENCE), "loss", "loss", results[m.BACKEND][0], ref_loss, abs(ref_loss),
                      TOLERANCE["loss"]) for m in mods]
    for a, b in _pairs(mods):
        (la, ga, wa), (lb, gb, wb) = results[a.BACKEND], results[b.BACKEND]
        diffs.append(abs_diff(_name(a, b), "loss", "loss", la, lb, peak(la, lb), TOLERANCE["loss"]))
        diffs += _param_diffs(_name(a, b), "grads", ga, gb) + _param_diffs(_name(a, b), "sgd step", wa, wb)
    return diffs


def exact_results(mods, exact_models, batch: Batch, lr: float) -> Dict[str, tuple]:
    """(loss, gradients, weights after one SGD step) of every backend's float64 copy."""
    x, y = batch
    return {m.BACKEND: _loss_grads_step(m, exact_models[m.BACKEND], x, y, lr) for m in mods}


def _loss_grads_step(mod: ModuleType, model, x: np.ndarray, y: np.ndarray, lr: float):
    """(loss, gradients, weights after one SGD step) of ``model`` on a canonical batch; the model takes the step."""
    xb = array_to_layout(x, mod.DATA_FORMAT)
    loss, grads = hooks(mod).loss_and_grads(model, xb, y)
    hooks(mod).sgd_step(model, xb, y, float32_lr(lr))
    return loss, grads, hooks(mod).parameters(model)


def nudge(weights: Weights, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Every weight moved by a relative ``eps32 * sqrt(fan_in) * N(0, 1)`` (a bias's fan-in is 1).

    A float32 product of length ``fan_in`` rounds at every addition; summed one term after the other its error
    grows to about ``eps32 * fan_in`` times a term (``sqrt(fan_in)`` roundings of partial sums ``sqrt(fan_in)``
    terms large), which is what moving each of its weights by ``eps32 * sqrt(fan_in)`` does to the exact sum.
    Kernels that sum in blocks or pairs round less, so this covers them too."""
    out = {}
    for k, v in weights.items():
        v = np.asarray(v, np.float64)
        fan_in = int(np.prod(v.shape[1:])) if v.ndim > 1 else 1
        out[k] = v * (1 + EPS32 * math.sqrt(fan_in) * rng.standard_normal(v.shape))
    return out


def roundings(batch: int, num_classes: int) -> float:
    """The roundings a float32 loss or gradient element takes past the products: its own, the softmax's exp and
    log, and the pairwise sums over the classes and over the batch."""
    return 3 + math.log2(max(batch, 1) * max(num_classes, 1))


def _bounded(pair: str, check: str, item: str, value, exact, spread: float, floor: float) -> Diff:
    """A float32 result against float64, within ``2 * spread + floor * max|exact|`` (see the module's doc)."""
    scale = peak(exact)
    bound = 2 * spread + floor * EPS32 * scale
    return abs_diff(pair, check, item, value, exact, scale, bound / scale if scale > 0 else 0.0)


def _spread(runs: Sequence[Mapping[str, np.ndarray]], exact: Mapping[str, np.ndarray]) -> Dict[str, float]:
    return {k: max(float(np.abs(np.asarray(r[k], np.float64) - exact[k]).max()) for r in runs) for k in exact}


def float32_grad_diffs(mods, models, exact_models, results: Mapping[str, tuple], start, batch: Batch, lr: float,
                       seed: int) -> List[Diff]:
    """Each backend's float32 loss, gradients and one SGD step against its float64 copy's (``results``), within
    bounds measured on the first backend's float64 copy with nudged weights (the float64 backends agree to
    ~1e-14)."""
    x, y = batch
    first = mods[0]
    probe, rng = exact_models[first.BACKEND], np.random.default_rng([seed, 2])

    def flat(loss, grads, after):
        return dict(grads, loss=np.float64(loss), **{f"after {k}": v for k, v in after.items()})

    runs = []
    for _ in range(DRAWS):
        first.import_weights(probe, nudge(start[first.BACKEND], rng))
        runs.append(flat(*_loss_grads_step(first, probe, x, y, lr)))
    first.import_weights(probe, start[first.BACKEND])
    floor = roundings(len(y), models[first.BACKEND].spec.num_classes)
    diffs = []
    for m in mods:
        pair = f"{m.BACKEND} float32 vs float64"
        loss, grads, after = results[m.BACKEND]
        spread = _spread(runs, flat(loss, grads, after))
        loss32, grads32, after32 = _loss_grads_step(m, models[m.BACKEND], x, y, lr)
        diffs.append(_bounded(pair, "loss", "loss", loss32, np.float64(loss), spread["loss"], floor))
        diffs += [_bounded(pair, "grads", k, grads32[k], grads[k], spread[k], floor) for k in grads]
        diffs += [_bounded(pair, "sgd step", k, after32[k], after[k], spread[f"after {k}"], floor) for k in after]
    return diffs


def trajectories(mods, models, batches: Sequence[Batch], lr: float,
                 rng: Optional[np.random.Generator] = None) -> Dict[str, List[float]]:
    """Plain SGD on the same batches in every backend: the loss of every step (before its update).  With ``rng``,
    every weight is nudged (``nudge``) before each step."""
    lr = float32_lr(lr)
    out = {}
    for m in mods:
        model, losses = models[m.BACKEND], []
        for x, y in batches:
            if rng is not None:
                m.import_weights(model, nudge(hooks(m).parameters(model), rng))
            losses.append(hooks(m).sgd_step(model, array_to_layout(x, m.DATA_FORMAT), y, lr))
        out[m.BACKEND] = losses
    return out


def step_diffs(losses: Mapping[str, Sequence[float]]) -> List[Diff]:
    """Every step's loss, across backends (relative to the larger of the two)."""
    diffs = []
    for a, b in combinations(losses, 2):
        for i, (la, lb) in enumerate(zip(losses[a], losses[b])):
            diffs.append(abs_diff(f"{a} vs {b}", "steps", f"step {i + 1}", la, lb, peak(la, lb), TOLERANCE["steps"]))
    return diffs


def float32_step_diffs(mods, models, exact_models, exact: Mapping[str, Sequence[float]], start,
                       batches: Sequence[Batch], lr: float, seed: int) -> List[Diff]:
    """Each backend's float32 trajectory against its float64 copy's (``exact``), step by step, within bounds
    measured on the first backend's float64 copy nudged before every step.  Once a trajectory has moved away, its
    later losses meet the other's only by chance, so each step's bound is the widest spread up to that step."""
    first, rng = mods[0], np.random.default_rng([seed, 3])
    runs = []
    for _ in range(DRAWS):
        first.import_weights(exact_models[first.BACKEND], start[first.BACKEND])
        runs.append(trajectories([first], exact_models, batches, lr, rng)[first.BACKEND])
    floor = roundings(len(batches[0][1]), models[first.BACKEND].spec.num_classes)
    diffs = []
    for m in mods:
        mine, widest = trajectories([m], models, batches, lr)[m.BACKEND], 0.0
        for i, (value, ref) in enumerate(zip(mine, exact[m.BACKEND])):
            widest = max([widest] + [abs(run[i] - ref) for run in runs])
            diffs.append(_bounded(f"{m.BACKEND} float32 vs float64", "steps", f"step {i + 1}", value, ref, widest,
                                  floor))
    return diffs


def check_request(names: Sequence[str], checks: Sequence[str], grad_dtype: str = "float64") -> None:
    """Raise ValueError for unknown checks or dtype, or for pairwise checks with fewer than two backends."""
    if grad_dtype not in GRAD_DTYPES:
        raise ValueError(f"expected grad_dtype to be one of {', '.join(GRAD_DTYPES)}, got {grad_dtype!r}")
    unknown = [c for c in checks if c not in CHECKS]
    if unknown or not checks:
        raise ValueError(f"expected checks among {', '.join(CHECKS)}, got {', '.join(checks) or 'none'}")
    pairwise = [c for c in checks if c in PAIRWISE]
    if pairwise and grad_dtype != "float32" and len(names) < 2:
        raise ValueError(f"the {' and '.join(pairwise)} check(s) compare backends with each other in float64: "
                         f"expected at least two backends (or grad dtype float32 alone, each against its own float64 copy), got "
                         f"{', '.join(names) or 'none'}")


@dataclass(frozen=True)
class Settings:
    """What the checks run on: images, batches and SGD, the precision of the gradient checks, the tolerances."""

    image_size: int = 224
    batch: int = 4
    seed: int = 0
    steps: int = 20
    lr: float = 0.05
    init: str = "kaiming"
    tolerance_scale: float = 1.0  # multiplies every tolerance (e.g. 10 on a GPU left in TF32)
    grad_dtype: str = "float64"   # "float64", "float32" or "both" (see the module's doc)
    onnx: bool = False            # ONNX Runtime against the reference in the forward and layers checks


@dataclass
class _State:
    """What every check starts from: the models (float32, and float64 copies where asked), the weights each
    backend started with, and the batches."""

    mods: Sequence[ModuleType]
    models: Dict[str, object]
    exact: Dict[str, object]
    start: Dict[str, Weights]
    spec: S.NetSpec
    weights: Weights
    batches: List[Batch]


def run_checks(mods: Sequence[ModuleType], checks: Sequence[str] = CHECKS, *,
               models: Optional[Dict[str, object]] = None, weights: Optional[Weights] = None,
               progress: bool = False, **settings) -> List[Diff]:
    """Run the named checks; every backend starts each check from the weights it started with.

    ``settings``: the fields of ``Settings`` (image size, batch, seed, steps, lr, init, tolerance scale, grad dtype,
    onnx), and any other NiN argument (variant, num_classes, in_channels) for the models.
    ``weights`` (default: ``NiN(seed=seed, init=init)``'s initial weights) feed the reference;
    ``models`` (default: built with those weights) may hold deliberately different ones.
    ``progress``: a bar over the checks (on a terminal).
    """
    fields = set(Settings.__dataclass_fields__)
    conf = Settings(**{k: v for k, v in settings.items() if k in fields})
    model_kwargs = {k: v for k, v in settings.items() if k not in fields}
    check_request([m.BACKEND for m in mods], checks, conf.grad_dtype)
    for mod in mods:
        hooks(mod).parity_mode()
    kwargs = dict(model_kwargs, seed=conf.seed, init=conf.init, image_size=conf.image_size)
    if weights is None:
        weights = model_config(**kwargs).initial_weights()
    if models is None:
        models = build_models(mods, weights, **kwargs)
    spec = models[mods[0].BACKEND].spec
    start = {m.BACKEND: m.export_weights(models[m.BACKEND]) for m in mods}
    exact = float64_models(mods, models) if set(checks) & set(GRAD_CHECKS) else {}
    state = _State(mods, models, exact, start, spec, weights,
                   make_batches(spec, conf.image_size, conf.batch, conf.seed, max(conf.steps, 1)))
    diffs: List[Diff] = []
    with progress_bar(progress, total=len(checks), desc="parity", unit="check", leave=False) as bar:
        for check in checks:
            bar.set_postfix_str(CHECK_TEXT[check], refresh=True)
            diffs += _one_check(check, state, conf)
            bar.update(1)
    return [replace(d, tol=d.tol * conf.tolerance_scale) for d in diffs]


def _restart(state: _State) -> None:
    """Every model, float32 and float64, back to the weights it started with."""
    for m in state.mods:
        for group in (state.models, state.exact):
            if m.BACKEND in group:
                m.import_weights(group[m.BACKEND], state.start[m.BACKEND])


def _one_check(check: str, state: _State, conf: Settings) -> List[Diff]:
    """One check, every backend starting from the weights it started with."""
    _restart(state)
    mods, x = state.mods, state.batches[0][0]
    if check == "forward":
        diffs = forward_diffs(mods, state.models, state.spec, state.weights, x)
    elif check == "layers":
        diffs = layer_diffs(mods, state.models, state.spec, state.weights, x)
    elif check == "grads":
        results = exact_results(mods, state.exact, state.batches[0], conf.lr)
        diffs = []
        if conf.grad_dtype in ("float64", "both"):
            diffs += grad_diffs(mods, results, state.spec, state.weights, state.batches[0])
        if conf.grad_dtype in ("float32", "both"):
            _restart(state)
            diffs += float32_grad_diffs(mods, state.models, state.exact, results, state.start, state.batches[0],
                                        conf.lr, conf.seed)
    else:
        batches = state.batches[:conf.steps]
        losses = trajectories(mods, state.exact, batches, conf.lr)
        diffs = step_diffs(losses) if conf.grad_dtype in ("float64", "both") else []
        if conf.grad_dtype in ("float32", "both"):
            _restart(state)
            diffs += float32_step_diffs(mods, state.models, state.exact, losses, state.start, batches, conf.lr,
                                        conf.seed)
    if conf.onnx and check in ONNX_CHECKS:
        diffs += onnx_diffs(check, state.spec, state.weights, x)
    return diffs


def first_failure(diffs: Sequence[Diff], pair: str, check: str) -> Optional[Diff]:
    """The first failing comparison of a pair and check in order (for layers: the first layer that diverges)."""
    return next((d for d in diffs if d.pair == pair and d.check == check and not d.passed), None)


def _largest(values: Sequence[float]) -> float:
    return math.nan if any(math.isnan(v) for v in values) else max(values)


def summarize(diffs: Sequence[Diff]) -> List[Row]:
    """One row per (pair, check), in order of appearance: the worst difference, and where.

    ``where`` names the first failing item (for layers: the first layer that diverges) or, when
    all pass, the worst one.
    """
    groups: Dict[Tuple[str, str], List[Diff]] = {}
    for d in diffs:
        groups.setdefault((d.pair, d.check), []).append(d)
    rows = []
    for (pair, check), group in groups.items():
        failing = [d for d in group if not d.passed]
        where = ""
        if len(group) > 1:
            nearest = max(group, key=lambda d: d.rel / d.tol if d.tol > 0 else math.inf)
            where = f"first diverging: {failing[0].item}" if failing else f"worst: {nearest.item}"
        if failing and failing[0].note:
            where += f" ({failing[0].note})"
        if len({d.tol for d in group}) == 1:
            rows.append(Row(pair, CHECK_TEXT[check], _largest([d.max_abs for d in group]),
                            _largest([d.rel for d in group]), group[0].tol, not failing, where))
        else:  # a bound per item (float32 against float64): the item nearest its bound, or past it
            worst = failing[0] if failing else max(group, key=lambda d: d.rel / d.tol if d.tol > 0 else math.inf)
            rows.append(Row(pair, CHECK_TEXT[check], worst.max_abs, worst.rel, worst.tol, not failing, where))
    return rows
