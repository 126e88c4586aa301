"""The same trained model, the same answers: predicted classes of every backend, ONNX Runtime and the float64
reference on the same images, and the float64 top-2 margin of every image where they differ.

Every backend's float32 logits lie within ``TOLERANCE["forward"]`` (relative to the largest reference logit) of
the float64 reference: that is what ``nin parity``'s forward check asserts.  Two logits each moved by at most
``eps`` can swap order only where their float64 gap is below ``2 * eps``: so every image whose float64 top-2
margin exceeds ``margin_bound`` must get the reference's class from every backend (``AgreementResult.bound``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np

from nin_common.arch import reference
from nin_common.engine import registry
from nin_common.tools.parity import ONNX, REFERENCE, TOLERANCE
from nin_common.util.progress import bar as progress_bar


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
