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
checks run float64 copies by default (``grad_dtype``): in float32, a ReLU input within rounding
of 0 may be gated one way by one framework and the other way by another, and every gradient
upstream of it then differs by that input's whole contribution (~5e-3 relative; on the CPU for
3 of 3 seeds at 224 px and 5 of 10 at 72 px, in gradients or in the trajectory), with no bug
anywhere.  In float64 the frameworks compute the same function to ~1e-14 and that ambiguity is
gone; float32 stays available, subject to it.

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
GRAD_DTYPES = ("float64", "float32")
REFERENCE = "reference"
ONNX = "onnxruntime"  # ONNX Runtime running the graph nin_common.tools.onnx_graph builds (forward and layers checks)
ONNX_CHECKS = ("forward", "layers")

# Relative tolerances (of max|reference| for outputs; of the larger side's max|.| otherwise).
TOLERANCE = {"forward": 1e-5, "layers": 1e-5, "loss": 1e-4, "grads": 1e-4, "sgd step": 1e-4, "steps": 1e-3}
CHECK_TEXT = {"forward": "forward (logits)", "layers": "layer outputs", "loss": "loss",
              "grads": "gradients", "sgd step": "weights after 1 SGD step", "steps": "losses over SGD steps"}

KINK_BAND = 1e-6  # a ReLU input this close to 0 (relative to its layer's largest) may be gated either way
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


def near_kinks(preactivations: Mapping[str, np.ndarray], band: float = KINK_BAND) -> int:
    """How many ReLU inputs lie within ``band`` (relative to their layer's largest) of 0.

    float32 may put such an input on either side of the kink, and the gradients upstream of it
    then differ by that one input's whole contribution: far beyond rounding, with no bug anywhere.
    """
    return sum(int((np.abs(z) <= band * np.abs(z).max()).sum()) for z in preactivations.values())


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


def grad_diffs(mods, models, spec: S.NetSpec, weights: Weights, batch: Batch, lr: float,
               grad_dtype: str = "float64") -> List[Diff]:
    """The loss (also against the reference's), every gradient, and the weights after one SGD step.

    ``models`` are the ``grad_dtype`` ones; in float32 a failure notes how many ReLU inputs lie
    within rounding of 0.
    """
    x, y = batch
    pre: Dict[str, np.ndarray] = {}
    ref_loss = reference.cross_entropy(reference.layer_outputs(spec, weights, x, pre)[-1], y)
    kinks = near_kinks(pre) if grad_dtype == "float32" else 0
    note = f"{kinks} ReLU input{'s' * (kinks != 1)} within float32 rounding of 0" if kinks else ""
    loss, grads, after = {}, {}, {}
    for m in mods:
        model, xb = models[m.BACKEND], array_to_layout(x, m.DATA_FORMAT)
        loss[m.BACKEND], grads[m.BACKEND] = hooks(m).loss_and_grads(model, xb, y)
        hooks(m).sgd_step(model, xb, y, float32_lr(lr))
        after[m.BACKEND] = hooks(m).parameters(model)
    diffs = [abs_diff(_name(m, REFERENCE), "loss", "loss", loss[m.BACKEND], ref_loss, abs(ref_loss), TOLERANCE["loss"])
             for m in mods]
    pairs = [(_name(a, b), a.BACKEND, b.BACKEND) for a, b in _pairs(mods)]
    diffs += [abs_diff(pair, "loss", "loss", loss[a], loss[b], peak(loss[a], loss[b]), TOLERANCE["loss"])
              for pair, a, b in pairs]
    for check, values in (("grads", grads), ("sgd step", after)):
        for pair, a, b in pairs:
            diffs += _param_diffs(pair, check, values[a], values[b], note)
    return diffs


def trajectories(mods, models, batches: Sequence[Batch], lr: float) -> Dict[str, List[float]]:
    """Plain SGD on the same batches in every backend: the loss of every step (before its update)."""
    lr = float32_lr(lr)
    return {m.BACKEND: [hooks(m).sgd_step(models[m.BACKEND], array_to_layout(x, m.DATA_FORMAT), y, lr) for x, y in batches]
            for m in mods}


def step_diffs(losses: Mapping[str, Sequence[float]]) -> List[Diff]:
    """Every step's loss, across backends (relative to the larger of the two)."""
    diffs = []
    for a, b in combinations(losses, 2):
        for i, (la, lb) in enumerate(zip(losses[a], losses[b])):
            diffs.append(abs_diff(f"{a} vs {b}", "steps", f"step {i + 1}", la, lb, peak(la, lb), TOLERANCE["steps"]))
    return diffs


def check_request(names: Sequence[str], checks: Sequence[str], grad_dtype: str = "float64") -> None:
    """Raise ValueError for unknown checks or dtype, or for pairwise checks with fewer than two backends."""
    if grad_dtype not in GRAD_DTYPES:
        raise ValueError(f"expected grad_dtype to be one of {', '.join(GRAD_DTYPES)}, got {grad_dtype!r}")
    unknown = [c for c in checks if c not in CHECKS]
    if unknown or not checks:
        raise ValueError(f"expected checks among {', '.join(CHECKS)}, got {', '.join(checks) or 'none'}")
    pairwise = [c for c in checks if c in PAIRWISE]
    if pairwise and len(names) < 2:
        raise ValueError(f"the {' and '.join(pairwise)} check(s) compare backends with each other: expected at "
                         f"least two backends, got {', '.join(names) or 'none'}")


def run_checks(mods: Sequence[ModuleType], checks: Sequence[str] = CHECKS, *, image_size: int = 224,
               batch: int = 4, seed: int = 0, steps: int = 20, lr: float = 0.05, init: str = "kaiming",
               models: Optional[Dict[str, object]] = None, weights: Optional[Weights] = None,
               tolerance_scale: float = 1.0, grad_dtype: str = "float64", onnx: bool = False,
               progress: bool = False, **model_kwargs) -> List[Diff]:
    """Run the named checks; every backend starts each check from the weights it started with.

    ``weights`` (default: ``NiN(seed=seed, init=init)``'s initial weights) feed the reference;
    ``models`` (default: built with those weights) may hold deliberately different ones.
    ``grad_dtype``: the precision of the gradient, SGD-step and trajectory checks ("float64":
    float64 copies of the models; "float32": the models themselves, subject to ReLU kinks).
    ``tolerance_scale`` multiplies every tolerance (e.g. 10 on a GPU left in TF32).
    ``onnx``: add ONNX Runtime against the reference to the forward and layers checks (needs onnx and
    onnxruntime; see ``nin_common.tools.onnx_graph``).  ``progress``: a bar over the checks (on a terminal).
    """
    check_request([m.BACKEND for m in mods], checks, grad_dtype)
    for mod in mods:
        hooks(mod).parity_mode()
    kwargs = dict(model_kwargs, seed=seed, init=init, image_size=image_size)
    if weights is None:
        weights = model_config(**kwargs).initial_weights()
    if models is None:
        models = build_models(mods, weights, **kwargs)
    spec = models[mods[0].BACKEND].spec
    start = {m.BACKEND: m.export_weights(models[m.BACKEND]) for m in mods}
    grad_models = models
    if grad_dtype == "float64" and any(c in GRAD_CHECKS for c in checks):
        grad_models = float64_models(mods, models)
    batches = make_batches(spec, image_size, batch, seed, max(steps, 1))
    diffs: List[Diff] = []
    with progress_bar(progress, total=len(checks), desc="parity", unit="check", leave=False) as bar:
        for check in checks:
            bar.set_postfix_str(CHECK_TEXT[check], refresh=True)
            diffs += _one_check(check, mods, models, grad_models, start, spec, weights, batches, steps, lr,
                                grad_dtype, onnx)
            bar.update(1)
    return [replace(d, tol=d.tol * tolerance_scale) for d in diffs]


def _one_check(check, mods, models, grad_models, start, spec, weights, batches, steps, lr, grad_dtype,
               onnx) -> List[Diff]:
    """One check, every backend starting from the weights it started with."""
    current = grad_models if check in GRAD_CHECKS else models
    for m in mods:
        m.import_weights(current[m.BACKEND], start[m.BACKEND])
    if check == "forward":
        diffs = forward_diffs(mods, models, spec, weights, batches[0][0])
    elif check == "layers":
        diffs = layer_diffs(mods, models, spec, weights, batches[0][0])
    elif check == "grads":
        diffs = grad_diffs(mods, current, spec, weights, batches[0], lr, grad_dtype)
    else:
        diffs = step_diffs(trajectories(mods, current, batches[:steps], lr))
    if onnx and check in ONNX_CHECKS:
        diffs += onnx_diffs(check, spec, weights, batches[0][0])
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
            where = f"first diverging: {failing[0].item}" if failing else \
                f"worst: {max(group, key=lambda d: d.rel).item}"
        if failing and failing[0].note:
            where += f" ({failing[0].note})"
        rows.append(Row(pair, CHECK_TEXT[check], _largest([d.max_abs for d in group]),
                        _largest([d.rel for d in group]), group[0].tol, not failing, where))
    return rows
