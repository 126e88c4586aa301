"""The shipped trained weights on the 10,000 Fashion-MNIST test images: how many predicted classes agree across
PyTorch, MXNet, TensorFlow, JAX, ONNX Runtime and the float64 reference, and each disagreement's float64 top-2
margin against the bound below which float32 rounding may flip a class.

Every backend's float32 logits lie within ``TOLERANCE["forward"]`` (relative to the largest reference logit) of
the float64 reference: that is what ``nin parity``'s forward check asserts.  Two logits each moved by at most
``eps`` can swap order only where their float64 gap is below ``2 * eps``: so every image whose float64 top-2
margin exceeds ``margin_bound`` must get the reference's class from every backend (``AgreementResult.bound``).

Not a test.  Appends one JSON line to ``benchmarks/results/agreement.jsonl``.

    python -m benchmarks.agreement --weights quick
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np

from nin_common.arch import pretrained, reference
from nin_common.engine import data, registry
from nin_common.tools.parity import ONNX, REFERENCE, TOLERANCE
from nin_common.util.progress import bar as progress_bar
from nin_common.util.machine import cpu_flags, describe, git_commit, load_average

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RESULTS = os.path.join(HERE, "results", "agreement.jsonl")


@dataclass
class AgreementResult:
    n: int
    classes: Dict[str, np.ndarray]           # name -> predicted class per image (the reference's too)
    margins: np.ndarray                      # float64 top-2 margin per image
    bound: float                             # margins above it must agree (module docstring)
    deviation: Dict[str, float] = field(default_factory=dict)  # name -> max|logits - reference| / max|reference|

    def disagreements(self) -> List[dict]:
        """Every image where some row's class differs from the reference's: index, margin, each row's class."""
        ref = self.classes[REFERENCE]
        differ = np.zeros(self.n, bool)
        for name, pred in self.classes.items():
            differ |= pred != ref
        return [dict(index=int(i), margin=float(self.margins[i]),
                     classes={k: int(v[i]) for k, v in self.classes.items()}) for i in np.flatnonzero(differ)]

    def agree_with_reference(self, name: str) -> int:
        return int((self.classes[name] == self.classes[REFERENCE]).sum())


def model_inputs(images_u8: np.ndarray, image_size: int) -> np.ndarray:
    """The float32 NCHW batch every row sees: x / 255 resized as the training pipeline does."""
    x = images_u8.astype(np.float64)[:, None] / 255.0
    return reference.resize_bilinear(x, image_size).astype(np.float32)


def agreement(names: Sequence[str], weights_name: str, images_u8: np.ndarray, batch: int = 500,
              onnx: bool = True, progress: bool = False) -> AgreementResult:
    """Predictions of trained weights ``weights_name`` on ``images_u8`` (N, 28, 28) by each backend in ``names``
    (float32), ONNX Runtime (float32) and the float64 reference."""
    mods = [registry.load(n) for n in names]
    models = {m.BACKEND: m.NiN(weights=weights_name) for m in mods}
    first = next(iter(models.values()))
    spec, image_size, weights = first.spec, first.image_size, first.config.initial_weights()
    rows = list(models) + ([ONNX] if onnx else []) + [REFERENCE]
    logits: Dict[str, List[np.ndarray]] = {r: [] for r in rows}
    onnx_model = None
    if onnx:
        from nin_common.tools import onnx_graph

        onnx_model = onnx_graph.build(spec, weights, image_size)
    bar = progress_bar(progress, total=len(images_u8), desc="agreement", unit="img")
    for start in range(0, len(images_u8), batch):
        x = model_inputs(images_u8[start:start + batch], image_size)
        for mod in mods:
            xb = x if mod.DATA_FORMAT == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            logits[mod.BACKEND].append(np.asarray(mod.predict(models[mod.BACKEND], xb), np.float64))
        if onnx:
            from nin_common.tools import onnx_graph

            logits[ONNX].append(np.asarray(onnx_graph.predict(onnx_model, x), np.float64))
        logits[REFERENCE].append(reference.forward(spec, weights, x.astype(np.float64)))
        bar.update(len(x))
    bar.close()
    full = {r: np.concatenate(v) for r, v in logits.items()}
    ref = full[REFERENCE]
    best = ref.argmax(axis=1)
    runner_up = np.where(np.arange(ref.shape[1]) == best[:, None], -np.inf, ref).max(axis=1)
    scale = float(np.abs(ref).max())
    return AgreementResult(
        n=len(ref), classes={r: v.argmax(axis=1) for r, v in full.items()}, margins=ref.max(axis=1) - runner_up,
        bound=2 * TOLERANCE["forward"] * scale,
        deviation={r: float(np.abs(v - ref).max() / scale) for r, v in full.items() if r != REFERENCE})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="quick")
    p.add_argument("--backend", default="all")
    p.add_argument("--limit", type=int, default=None, help="the first N test images (default: all 10,000)")
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args()
    split = data.load("test", limit=args.limit, progress=False)
    result = agreement(registry.parse_list(args.backend), args.weights, split.images, progress=True)
    ref = result.classes[REFERENCE]
    agree = {name: result.agree_with_reference(name) for name in result.classes if name != REFERENCE}
    all_agree = int(sum(all(v[i] == ref[i] for v in result.classes.values()) for i in range(result.n)))
    accuracy = {name: float((pred == split.labels).mean()) for name, pred in result.classes.items()}
    for name, count in agree.items():
        print(f"{name:>12}: {count:,} of {result.n:,} classes as the float64 reference's; test accuracy "
              f"{accuracy[name]:.4f}; largest logit deviation {result.deviation[name]:.2e} of the largest logit")
    print(f"every row agrees on {all_agree:,} of {result.n:,} images; float64 top-2 margins above "
          f"{result.bound:.2e} must agree; smallest margin {result.margins.min():.2e}")
    for d in result.disagreements():
        print(f"  image {d['index']}: margin {d['margin']:.2e}, classes {d['classes']}")
    row = dict(weights=args.weights, sha256=pretrained.sha256_file(pretrained.path_of(args.weights)), n=result.n,
               agree_with_reference=agree, all_agree=all_agree,
               accuracy=accuracy, reference_accuracy=accuracy[REFERENCE], margin_bound=result.bound,
               smallest_margin=float(result.margins.min()),
               margins_below_bound=int((result.margins <= result.bound).sum()),
               logit_deviation=result.deviation, disagreements=result.disagreements(),
               date=datetime.datetime.now().isoformat(timespec="seconds"), commit=git_commit(ROOT),
               machine=describe(), cpu_flags=sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}),
               load=load_average())
    with open(args.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
    print(f"row appended to {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
