"""Data-parallel parity: N SGD steps on W workers end with the weights of the same steps in one process.

Each worker (started through the backend's own launcher, ``nin_common.engine.launch``) builds the same NiN, takes its
slice of every global batch, and steps through the framework's engine (``<backend>.distributed.sgd_steps``),
dropout off; the chief saves the weights.  The single process steps on the whole batches with the parity
hooks' ``sgd_step`` (the cross-framework checks' own code), and every weight is compared element-wise.

Tolerances: in float64 the two must agree to 1e-10 relative (only the order of the batch sums differs, at
1e-16).  In float32, both runs round, each along its own path (the workers sum the global batch's gradient in
another order: each its slice, then the engine adds the slices; their kernels may pick other algorithms for half
the batch), so neither is the other's reference: both are measured against a float64 run of the same steps.  What
one float32 path costs is the larger of two measures, per tensor: the single process's own float32 error, and the
float64 steps' spread when every weight is nudged by about a float32 rounding before each step (``nudge`` in
``nin_common.tools.parity``, the widest of its draws).  The second covers a ReLU input within rounding of 0 that
one path gates one way and the other path the other way: every gradient upstream of it then moves by that input's
whole contribution, and the following steps carry it to every layer; a single process that happens to round
such an input the float64 way would otherwise set a bound the workers cannot meet.  The workers' error may be
twice that (two rounding paths of the same kind) plus what reassociating the work itself can cost: rounding the
weights once per step (``steps * eps32 * max|w64|``) and reordering each step's batch sum
(``log2(batch) * eps32 * max|w64 - w0|``, the steps' change ``w64 - w0`` standing for the summed gradients times
the learning rate)::

    max|w32(workers) - w64| <= 2 * max(max|w32(alone) - w64|, spread) + eps32 * (steps * max|w64| + log2(batch) * max|w64 - w0|)

A real fault (a shard missed, a gradient not averaged) moves a weight by a fraction of ``max|w64 - w0|``, far
beyond this bound wherever no kink sits.

Run it with ``nin parity --workers 2`` (``python -m nin_common.tools.parity.dataparallel worker ...`` is the worker).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from nin_common.arch.shapes import array_to_layout
from nin_common.arch.weights import load_npz, save_npz
from nin_common.engine import launch, registry
from nin_common.engine.distributed import World, local_slice
from nin_common.tools.parity import DRAWS, EPS32, float32_lr, make_batches, nudge

FLOAT64_TOL = 1e-10
DTYPES = ("float64", "float32")
DEFAULTS = dict(workers=2, steps=3, batch=128, image_size=67, seed=0, lr=0.05)


@dataclass(frozen=True)
class Result:
    """One weight tensor compared: workers against alone (and, in float32, each against float64)."""

    dtype: str
    item: str
    max_abs: float      # max |w(workers) - w(alone)|, element-wise
    rel: float          # ... over max |w(alone)|
    tol: float          # the bound on ``rel`` (float64) or on ``max_abs`` (float32), see the module's doc
    passed: bool


def _model(backend: str, image_size: int, seed: int, dtype: str):
    mod = registry.load(backend)
    model = mod.NiN(seed=seed, init="kaiming", image_size=image_size)
    hooks = registry.part(backend, "parity")
    hooks.parity_mode()
    return hooks.as_float64(model) if dtype == "float64" else model


def _batches(backend: str, spec, settings: dict, dtype: str):
    fmt = registry.info(backend).data_format
    out = []
    for x, y in make_batches(spec, settings["image_size"], settings["batch"], settings["seed"], settings["steps"]):
        out.append((array_to_layout(x.astype(dtype), fmt), y.astype(np.int64)))
    return out


def worker(argv: Sequence[str]) -> int:
    """One worker of the check (started by the launcher): steps through the engine, the chief saves weights."""
    p = argparse.ArgumentParser(prog="python -m nin_common.tools.parity.dataparallel worker")
    p.add_argument("--backend", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dtypes", default="float64", help="the precisions to step in, in turn, comma-separated "
                   "(one launch, one join, for all of them)")
    for name, value in DEFAULTS.items():
        if name != "workers":
            p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = p.parse_args(argv)
    dtypes = args.dtypes.split(",")
    if not dtypes or not set(dtypes) <= set(DTYPES):
        raise SystemExit(f"--dtypes: expected a comma-separated list of {', '.join(DTYPES)}; got {args.dtypes!r}")
    settings = {k: getattr(args, k) for k in DEFAULTS if k != "workers"}
    dist = registry.part(args.backend, "distributed")
    world = registry.launching(args.backend).environment_world()
    if world is None:
        raise SystemExit("expected to be started by the engine's launcher (no worker variables set)")
    group = dist.join(world, "cpu")  # float64 parity: CPU workers
    world = group.world  # the engine may assign the rank (MXNet's scheduler)
    try:
        launch.register(world.rank)
        for dtype in dtypes:
            with group.scope():
                model = _model(args.backend, args.image_size, args.seed, dtype)
            local = []
            for x, y in _batches(args.backend, model.spec, settings, dtype):
                part = local_slice(len(y), world)
                local.append((x[part], y[part], len(y)))
            weights = dist.sgd_steps(group, model, local, float32_lr(args.lr))
            if world.chief:
                save_npz(_weights_file(args.out, args.backend, dtype),
                         {k: np.asarray(v) for k, v in weights.items()})
        group.barrier()
    finally:
        group.leave()
    launch.finish(world.rank)
    return 0


def initial(backend: str, **settings) -> Dict[str, np.ndarray]:
    """The weights before the steps (float64), as both runs start from them."""
    settings = dict(DEFAULTS, **settings)
    model = _model(backend, settings["image_size"], settings["seed"], "float64")
    return {k: np.asarray(v, np.float64) for k, v in registry.part(backend, "parity").parameters(model).items()}


def alone(backend: str, dtype: str, rng: Optional[np.random.Generator] = None, **settings) -> Dict[str, np.ndarray]:
    """The same steps in this process, on whole batches, with the parity hooks' ``sgd_step``; with ``rng``, every
    weight is nudged (``nin_common.tools.parity.nudge``) before each step."""
    settings = dict(DEFAULTS, **settings)
    model = _model(backend, settings["image_size"], settings["seed"], dtype)
    mod, hooks = registry.load(backend), registry.part(backend, "parity")
    for x, y in _batches(backend, model.spec, settings, dtype):
        if rng is not None:
            mod.import_weights(model, nudge(hooks.parameters(model), rng))
        hooks.sgd_step(model, x, y, float32_lr(settings["lr"]))
    return {k: np.asarray(v, np.float64) for k, v in hooks.parameters(model).items()}


def spread(backend: str, exact: Mapping[str, np.ndarray], **settings) -> Dict[str, float]:
    """How far the float64 steps' weights move, per tensor, when every weight is nudged by about a float32
    rounding before each step: the widest of ``DRAWS`` runs."""
    rng = np.random.default_rng([dict(DEFAULTS, **settings)["seed"], 4])
    runs = [alone(backend, "float64", rng, **settings) for _ in range(DRAWS)]
    return {k: max(float(np.abs(run[k] - exact[k]).max()) for run in runs) for k in exact}


def _weights_file(folder: str, backend: str, dtype: str) -> str:
    return os.path.join(folder, f"{backend}-{dtype}-weights.npz")


def with_workers(backend: str, dtypes: Sequence[str], folder: str, timeout_s: float = 600,
                 **settings) -> Dict[str, Dict[str, np.ndarray]]:
    """The weights after the steps on ``settings['workers']`` workers started through the backend's launcher, per
    dtype: one job steps in every dtype in turn, unless the engine keeps one precision per job (its distributed
    launching module's ``ONE_PRECISION_PER_JOB``), then one job per dtype."""
    settings = dict(DEFAULTS, **settings)
    one_each = registry.launching(backend).ONE_PRECISION_PER_JOB
    for jobs in ([[d] for d in dtypes] if one_each else [list(dtypes)]):
        argv = ["-m", "nin_common.tools.parity.dataparallel", "worker", "--backend", backend, "--out", folder,
                "--dtypes", ",".join(jobs)]
        for name, value in settings.items():
            if name != "workers":
                argv += [f"--{name.replace('_', '-')}", str(value)]
        launch.start(backend, settings["workers"], argv, timeout_s=timeout_s)
    return {dtype: {k: np.asarray(v, np.float64) for k, v in load_npz(_weights_file(folder, backend, dtype))[0].items()}
            for dtype in dtypes}


def compare(backend: str, folder: str, dtypes: Sequence[str] = DTYPES, **settings) -> List[Result]:
    """Every weight tensor after the steps, workers against alone, at each of ``dtypes``."""
    results: List[Result] = []
    steps, batch = dict(DEFAULTS, **settings)["steps"], dict(DEFAULTS, **settings)["batch"]
    exact = alone(backend, "float64", **settings)
    start = initial(backend, **settings)
    stepped = with_workers(backend, dtypes, folder, **settings)
    nudged = spread(backend, exact, **settings) if "float32" in dtypes else {}
    for dtype in dtypes:
        mine = stepped[dtype]
        ref = exact if dtype == "float64" else alone(backend, dtype, **settings)
        for name in exact:
            diff = float(np.abs(mine[name] - ref[name]).max())
            scale = float(np.abs(ref[name]).max()) or 1.0
            if dtype == "float64":
                results.append(Result(dtype, name, diff, diff / scale, FLOAT64_TOL, diff / scale <= FLOAT64_TOL))
            else:
                own = max(float(np.abs(ref[name] - exact[name]).max()),  # what float32 itself costs alone,
                          nudged[name])                                   # or what a rounding can cost
                err = float(np.abs(mine[name] - exact[name]).max())     # ... and with workers
                change = float(np.abs(exact[name] - start[name]).max())  # the steps' change of this tensor
                floor = EPS32 * (steps * float(np.abs(exact[name]).max()) + math.log2(batch) * change)
                tol = 2 * own + floor
                results.append(Result(dtype, name, diff, diff / scale, tol, err <= tol))
    return results


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["worker"]:
        return worker(argv[1:])
    raise SystemExit("usage: python -m nin_common.tools.parity.dataparallel worker ... (nin parity --workers N runs the check)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
