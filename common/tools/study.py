"""``nin compare``: train variants in several backends on the same data, seed and batch order; write a report.

The report (``report.md``) puts side by side, per variant: the shape tables of every backend (NCHW vs NHWC),
parameters (counted by each framework) and multiply-adds (analytic), time per epoch, loss and accuracy
curves, and final accuracy; ``curves.png``, ``resources.png`` and ``results.png`` plot them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Dict, List, Sequence

from common.engine import registry
from common.arch.shapes import batch_shape
from common.util.files import atomic_path
from common.arch.costs import resources
from common.arch.variants import build_spec, check_variant, describe


@dataclass
class Run:
    variant: str
    backend: str
    params: int
    macs: int
    shapes: List[tuple]
    rows: List[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.variant} / {self.backend}"

    @property
    def epoch_seconds(self) -> float:
        return sum(r["train_s"] for r in self.rows) / len(self.rows)

    @property
    def final(self) -> dict:
        return self.rows[-1]


def run_all(names: Sequence[str], variants: Sequence[str], out: str, *, epochs: int, image_size: int,
            limit_train, limit_val, batch_size: int, lr: float, init: str, seed: int, device: str,
            precision: str = "auto", data_dir: Optional[str] = None, progress: bool = True) -> List[Run]:
    """Train every (variant, backend) with the same settings; each run writes to ``out/runs/<variant>-<backend>``."""
    for v in variants:
        check_variant(v)
    mods = [registry.load(n) for n in names]  # fail before any training when a framework is missing
    runs = []
    for variant in variants:
        macs = resources(build_spec(variant), image_size).totals["macs"]
        for mod in mods:
            model = mod.NiN(variant=variant, seed=seed, init=init, image_size=image_size)
            shapes = mod.layer_shapes(model, batch_shape(mod.DATA_FORMAT, 1, model.in_channels, image_size))
            run = Run(variant, mod.BACKEND, mod.num_params(model), macs, shapes)
            print(f"== {run.label}: {run.params:,} parameters, {macs:,} multiply-adds per image", flush=True)
            run.rows = mod.fit(variant=variant, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                               limit_train=limit_train, limit_val=limit_val, device=device, seed=seed, init=init,
                               precision=precision, data_dir=data_dir, out=os.path.join(out, "runs", f"{variant}-{mod.BACKEND}"), progress=progress)
            runs.append(run)
    return runs


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(runs: Sequence[Run], settings: Dict[str, object]) -> str:
    variants = list(dict.fromkeys(r.variant for r in runs))
    names = list(dict.fromkeys(r.backend for r in runs))
    parts = ["# NiN variants across frameworks", "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()) + ".",
             "Every run trains on the same images in the same batch order from the same initial weights.", "",
             "## Results", "",
             _table(["variant", "backend", "parameters (framework)", "multiply-adds / image", "s / epoch (train)",
                     "images/s", "final train loss", "final val loss", "final val acc"],
                    [[r.variant, r.backend, f"{r.params:,}", f"{r.macs:,}", f"{r.epoch_seconds:.1f}",
                      f"{r.final['images_per_s']:.1f}", f"{r.final['train_loss']:.4f}",
                      f"{r.final['val_loss']:.4f}", f"{r.final['val_acc']:.4f}"] for r in runs]),
             "", "![loss and accuracy per epoch](curves.png)", "",
             "![parameters and multiply-adds](resources.png)", "", "![time per epoch and accuracy](results.png)", "",
             "## Per-epoch metrics", "",
             _table(["variant", "backend", "epoch", "train loss", "train acc", "val loss", "val acc", "images/s"],
                    [[r.variant, r.backend, row["epoch"], f"{row['train_loss']:.4f}", f"{row['train_acc']:.4f}",
                      f"{row['val_loss']:.4f}", f"{row['val_acc']:.4f}", f"{row['images_per_s']:.1f}"]
                     for r in runs for row in r.rows]),
             "", "## Shape tables (NCHW vs NHWC)", ""]
    for variant in variants:
        vruns = [r for r in runs if r.variant == variant]
        parts += [f"### {variant}", "", describe(variant), ""]
        header = ["#"] + [f"{r.backend} layer | {r.backend} output" for r in vruns]
        body = []
        for i in range(len(vruns[0].shapes)):
            body.append([i] + [f"{r.shapes[i][0]} | {tuple(r.shapes[i][1])}" for r in vruns])
        parts += [_table(header, body), ""]
    parts += [f"Backends: {', '.join(names)}.", ""]
    return "\n".join(parts)


def plot(runs: Sequence[Run], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(dict.fromkeys(r.variant for r in runs))
    names = list(dict.fromkeys(r.backend for r in runs))

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for r in runs:
        epochs = [row["epoch"] for row in r.rows]
        axes[0].plot(epochs, [row["train_loss"] for row in r.rows], marker="o", label=r.label)
        axes[1].plot(epochs, [row["val_loss"] for row in r.rows], marker="o", label=r.label)
        axes[2].plot(epochs, [row["val_acc"] for row in r.rows], marker="o", label=r.label)
    for ax, title in zip(axes, ("train loss", "val loss", "val acc")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    _save(fig, os.path.join(out, "curves.png"))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    first = {v: next(r for r in runs if r.variant == v) for v in variants}
    axes[0].bar(variants, [first[v].params for v in variants])
    axes[0].set_title("parameters")
    axes[1].bar(variants, [first[v].macs for v in variants])
    axes[1].set_title("multiply-adds per image")
    for ax in axes:
        ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=45)
    _save(fig, os.path.join(out, "resources.png"))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        xs = [i + j * width for i in range(len(variants))]
        by_variant = {r.variant: r for r in runs if r.backend == name}
        axes[0].bar(xs, [by_variant[v].epoch_seconds for v in variants], width, label=name)
        axes[1].bar(xs, [by_variant[v].final["val_acc"] for v in variants], width, label=name)
    for ax, title in zip(axes, ("seconds per epoch (training)", "final validation accuracy")):
        ax.set_title(title)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(variants))], variants, rotation=45)
        ax.legend()
    _save(fig, os.path.join(out, "results.png"))


def _save(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def write(runs: Sequence[Run], out: str, settings: Dict[str, object]) -> str:
    plot(runs, out)
    path = os.path.join(out, "report.md")
    with atomic_path(path, ".md") as tmp, open(tmp, "w") as f:
        f.write(report(runs, settings))
    return path
