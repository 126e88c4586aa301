"""What a learner looks at after ``nin evaluate``: accuracy per class (Fashion-MNIST's names), the confusion
matrix, and test images with their true and predicted labels (the chapter's ``predict_ch3`` view).

The plots draw on matplotlib's ``Figure`` with an Agg canvas (as ``nin_common.engine.curves``), so they need no
display and leave pyplot's backend alone: a notebook importing this still shows its own figures inline.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from nin_common.engine.data import CLASS_NAMES
from nin_common.util.files import atomic_path, write_json
from nin_common.util.markdown import table

CONFUSION_PNG = "confusion.png"
EXAMPLES_PNG = "predictions.png"
REPORT_MD = "evaluation.md"
RESULT_JSON = "evaluation.json"


@dataclass(frozen=True)
class ClassResult:
    name: str
    n: int
    correct: int
    predicted: int  # how many images the model put in this class

    @property
    def acc(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else float("nan")


def confusion(labels: Sequence[int], predictions: Sequence[int], num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """(true class, predicted class) -> count, as an int64 (classes, classes) array."""
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"expected as many predictions as labels, got {predictions.shape} and {labels.shape}")
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class(matrix: np.ndarray, names: Sequence[str] = CLASS_NAMES) -> List[ClassResult]:
    """One result per class from a confusion matrix."""
    return [ClassResult(names[k], int(matrix[k].sum()), int(matrix[k, k]), int(matrix[:, k].sum()))
            for k in range(len(matrix))]


def most_confused(matrix: np.ndarray, names: Sequence[str] = CLASS_NAMES, top: int = 3) -> List[str]:
    """'shirt taken for t-shirt (123 images)' for the largest off-diagonal counts."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    pairs = [np.unravel_index(i, off.shape) for i in order]
    return [f"{names[t]} taken for {names[p]} ({off[t, p]} images)" for t, p in pairs if off[t, p] > 0]


def markdown(results: Sequence[ClassResult], matrix: np.ndarray, title: str, images: bool = True) -> str:
    """The per-class table and the most frequent confusions, as Markdown."""
    total_n, total_ok = sum(r.n for r in results), sum(r.correct for r in results)
    share = lambda v: "n/a" if v != v else f"{v:.4f}"  # noqa: E731 - nan: no image of / predicted as the class
    body = [[r.name, r.n, r.correct, share(r.acc), share(r.precision)] for r in results]
    body.append(["**all**", total_n, total_ok, f"{total_ok / max(total_n, 1):.4f}", ""])
    lines = [f"# {title}", "", table(["class", "images", "correct", "accuracy", "precision"], body, "lrrrr"), "",
              "accuracy: the share of a class's images predicted as it; precision: the share of the images "
              "predicted as a class that are of it.", ""]
    confused = most_confused(matrix)
    if confused:
        lines += ["Most frequent confusions: " + "; ".join(confused) + ".", ""]
    if images:
        lines += [f"![confusion matrix]({CONFUSION_PNG})", "", f"![test images, true and predicted]({EXAMPLES_PNG})",
                  ""]
    return "\n".join(lines)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> None:
    """Write ``fig`` to ``path`` atomically (nothing for ``None``: the caller shows the figure itself)."""
    if path is None:
        return
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def plot_confusion(matrix: np.ndarray, path=None, names: Sequence[str] = CLASS_NAMES, title: str = ""):
    """The confusion matrix as a heat map, rows normalised (each true class sums to 1), counts in the cells."""
    fig = _figure(7.5, 6.5)
    ax = fig.add_subplot()
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.85, label="share of the true class")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (t, p), count in np.ndenumerate(matrix):
        if count:
            ax.text(p, t, str(count), ha="center", va="center", fontsize=7,
                    color="white" if share[t, p] > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize="medium")
    _save(fig, path)
    return fig


def plot_examples(images_u8: np.ndarray, labels: Sequence[int], predictions: Sequence[int], path=None,
                  names: Sequence[str] = CLASS_NAMES, count: int = 18, columns: int = 9):
    """The first ``count`` test images with 'true / predicted' above each; mistakes in red (d2l's predict_ch3)."""
    count = min(count, len(labels))
    rows = max(1, -(-count // columns))
    fig = _figure(1.3 * columns, 1.9 * rows + 0.3)
    for i in range(count):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.imshow(images_u8[i], cmap="gray_r")
        ax.set_axis_off()
        right = labels[i] == predictions[i]
        ax.set_title(f"{names[labels[i]]}\n{names[predictions[i]]}", fontsize=7,
                     color="black" if right else "red")
    fig.suptitle("true (top) / predicted (bottom); mistakes in red", fontsize=8)
    _save(fig, path)
    return fig


def write(out: str, images_u8: np.ndarray, labels: Sequence[int], predictions: Sequence[int], title: str,
          result: Dict) -> Dict[str, str]:
    """Write the views into ``out``: confusion.png, predictions.png, evaluation.md, evaluation.json."""
    os.makedirs(out, exist_ok=True)
    matrix = confusion(labels, predictions)
    results = per_class(matrix)
    paths = {name: os.path.join(out, name) for name in (CONFUSION_PNG, EXAMPLES_PNG, REPORT_MD, RESULT_JSON)}
    plot_confusion(matrix, paths[CONFUSION_PNG], title=title)
    plot_examples(images_u8, labels, predictions, paths[EXAMPLES_PNG])
    with atomic_path(paths[REPORT_MD], ".md") as tmp, open(tmp, "w") as f:
        f.write(markdown(results, matrix, title))
    write_json(paths[RESULT_JSON], dict(result, confusion=matrix.tolist(),
                                        per_class={r.name: dict(n=r.n, correct=r.correct, acc=r.acc)
                                                   for r in results}))
    return paths
