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
from common.util.markdown import table
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
            precision: str = "auto", recipe: str = "quick", schedule: Optional[str] = None,
            warmup: Optional[float] = None, data_dir: Optional[str] = None, progress: bool = True) -> List[Run]:
    """Train every (variant, backend) with the same settings; each run writes to ``out/runs/<variant>-<backend>``.
    The settings left None (``schedule``, ``warmup``) come from ``recipe``."""
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
                               precision=precision, recipe=recipe, schedule=schedule, warmup=warmup, data_dir=data_dir,
                               out=os.path.join(out, "runs", f"{variant}-{mod.BACKEND}"), progress=progress)
            runs.append(run)
    return runs


def _used(runs: Sequence[Run], key: str) -> str:
    """What the runs resolved a setting to ('bf16', or 'fp32 (mxnet), bf16 (torch, tf)' when they differ)."""
    by_value: Dict[str, List[str]] = {}
    for r in runs:
        by_value.setdefault(str(r.final.get(key, "?")), []).append(f"{r.variant}/{r.backend}")
    if len(by_value) == 1:
        return next(iter(by_value))
    backends = {v: sorted({name.split("/")[1] for name in names}) for v, names in by_value.items()}
    return ", ".join(f"{v} ({', '.join(b)})" for v, b in backends.items())


def _load(run: Run) -> str:
    """The 1-minute load averages after the run's epochs ('1.9' or '1.9-4.0'; '?' where not recorded)."""
    loads = [row["load_avg"][0] for row in run.rows if row.get("load_avg")]
    if not loads:
        return "?"
    low, high = min(loads), max(loads)
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f}"


def report(runs: Sequence[Run], settings: Dict[str, object]) -> str:
    variants = list(dict.fromkeys(r.variant for r in runs))
    names = list(dict.fromkeys(r.backend for r in runs))
    parts = ["# NiN variants across frameworks", "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()) + ".",
             f"Resolved: device {_used(runs, 'device')}; precision {_used(runs, 'precision')}; "
             f"{runs[0].final.get('n_train', '?')} training and {runs[0].final.get('n_val', '?')} validation images.",
             "Every run trains on the same images in the same batch order from the same initial weights.", "",
             "## Results", "",
             table(["variant", "backend", "parameters (framework)", "multiply-adds / image", "s / epoch (train)",
                     "images/s", "load (1 min)", "final train loss", "final val loss", "final val acc"],
                    [[r.variant, r.backend, f"{r.params:,}", f"{r.macs:,}", f"{r.epoch_seconds:.1f}",
                      f"{r.final['images_per_s']:.1f}", _load(r), f"{r.final['train_loss']:.4f}",
                      f"{r.final['val_loss']:.4f}", f"{r.final['val_acc']:.4f}"] for r in runs]),
             "",
             "Times are comparable only between runs made at the same load: the load column gives the machine's "
             "1-minute load average after each epoch (above the number of cores, another job shared them).",
             "", "![loss and accuracy per epoch](curves.png)", "",
             "![parameters and multiply-adds](resources.png)", "", "![time per epoch and accuracy](results.png)", "",
             "## Per-epoch metrics", "",
             table(["variant", "backend", "epoch", "train loss", "train acc", "val loss", "val acc", "images/s"],
                    [[r.variant, r.backend, row["epoch"], f"{row['train_loss']:.4f}", f"{row['train_acc']:.4f}",
                      f"{row['val_loss']:.4f}", f"{row['val_acc']:.4f}", f"{row['images_per_s']:.1f}"]
                     for r in runs for row in r.rows]),
             "", "## Shape tables (NCHW vs NHWC)", ""]
    for variant in variants:
        vruns = [r for r in runs if r.variant == variant]
        parts += [f"### {variant}", "", describe(variant), ""]
        header = ["#"] + [f"{r.backend} {what}" for r in vruns for what in ("layer", "output")]
        body = []
        for i in range(len(vruns[0].shapes)):
            body.append([i] + [cell for r in vruns for cell in (r.shapes[i][0], tuple(r.shapes[i][1]))])
        parts += [table(header, body), ""]
    parts += [f"Backends: {', '.join(names)}.", ""]
    return "\n".join(parts)


LINE_STYLES = ("-", "--", ":", "-.")  # one per backend
MARKERS = ("o", "s", "^", "D")


def _figure(width: float, height: float, columns: int):
    """A figure with an Agg canvas (no pyplot, so a notebook's own backend is left alone) and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, columns)


def _colours(count: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def plot(runs: Sequence[Run], out: str) -> None:
    """curves.png (one colour per variant, one line style per backend, integer epochs, legends beside the
    plots), resources.png (linear axes from zero) and results.png."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    variants = list(dict.fromkeys(r.variant for r in runs))
    names = list(dict.fromkeys(r.backend for r in runs))
    colour = dict(zip(variants, _colours(len(variants))))
    style = {n: LINE_STYLES[i % len(LINE_STYLES)] for i, n in enumerate(names)}
    marker = {n: MARKERS[i % len(MARKERS)] for i, n in enumerate(names)}

    fig, axes = _figure(15, 4.5, 3)
    for r in runs:
        epochs = [row["epoch"] for row in r.rows]
        for ax, key in zip(axes, ("train_loss", "val_loss", "val_acc")):
            ax.plot(epochs, [row[key] for row in r.rows], color=colour[r.variant], linestyle=style[r.backend],
                    marker=marker[r.backend], markersize=4, linewidth=1.4)
    for ax, title in zip(axes, ("train loss", "val loss", "val acc")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    by_variant = [Line2D([], [], color=colour[v], linewidth=3, label=v) for v in variants]
    by_backend = [Line2D([], [], color="0.3", linestyle=style[n], marker=marker[n], label=n) for n in names]
    fig.legend(handles=by_variant, title="variant (colour)", loc="outside right upper", fontsize=8)
    fig.legend(handles=by_backend, title="backend (line)", loc="outside right lower", fontsize=8)
    _save(fig, os.path.join(out, "curves.png"))

    fig, axes = _figure(12, 4.5, 2)
    first = {v: next(r for r in runs if r.variant == v) for v in variants}
    for ax, values, title, unit in ((axes[0], [first[v].params for v in variants], "parameters", 1e6),
                                    (axes[1], [first[v].macs for v in variants], "multiply-adds per image", 1e6)):
        bars = ax.bar(variants, [v / unit for v in values], color=[colour[v] for v in variants])
        ax.bar_label(bars, [f"{v / unit:.2f} M" for v in values], fontsize=8)
        ax.set_title(title)
        ax.set_ylabel("millions")
        ax.set_ylim(bottom=0)  # a linear axis from zero: bar heights compare as the numbers do
        ax.tick_params(axis="x", rotation=45)
    _save(fig, os.path.join(out, "resources.png"))

    fig, axes = _figure(12, 4.5, 2)
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        xs = [i + j * width for i in range(len(variants))]
        by_variant = {r.variant: r for r in runs if r.backend == name}
        axes[0].bar(xs, [by_variant[v].epoch_seconds for v in variants], width, label=name)
        axes[1].bar(xs, [by_variant[v].final["val_acc"] for v in variants], width, label=name)
    for ax, title in zip(axes, ("seconds per epoch (training)", "final validation accuracy")):
        ax.set_title(title)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(variants))], variants, rotation=45)
        ax.set_ylim(bottom=0)
    fig.legend(*axes[0].get_legend_handles_labels(), title="backend", loc="outside right upper", fontsize=8)
    _save(fig, os.path.join(out, "results.png"))


def _save(fig, path: str) -> None:
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")


def write(runs: Sequence[Run], out: str, settings: Dict[str, object]) -> str:
    plot(runs, out)
    path = os.path.join(out, "report.md")
    with atomic_path(path, ".md") as tmp, open(tmp, "w") as f:
        f.write(report(runs, settings))
    return path
