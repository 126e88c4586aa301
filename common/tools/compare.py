"""``nin compare``: train variants in several backends on the same data, seed and batch order; write a report.

The report (``report.md``) puts side by side, per variant: the shape tables of every backend (NCHW vs NHWC),
parameters (counted by each framework) and multiply-adds (analytic), time per epoch with the machine's load,
loss and accuracy curves, and final accuracy; over several seeds, each (variant, backend)'s mean and min–max of
the final accuracy and its train − validation gap.  ``curves.png``, ``resources.png`` and ``results.png`` plot
them (over seeds: the mean, with the min–max as a band or an error bar; a seed at chance as a curve of its own).  A comparison is resumable: the same
command, run again, reads the runs that finished, continues the interrupted ones and trains the rest.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

from nin_common.engine import recipes, registry
from nin_common.engine.checkpoint import find_checkpoint, read_state
from nin_common.engine.training import FIXED_ON_RESUME
from nin_common.arch.shapes import batch_shape
from nin_common.util.files import atomic_path, read_json, write_json
from nin_common.util.machine import load_average
from nin_common.util.markdown import table
from nin_common.arch.costs import resources
from nin_common.arch.variants import build_spec, check_variant, describe


@dataclass
class Run:
    variant: str
    backend: str
    params: int
    macs: int
    shapes: List[tuple]
    rows: List[dict] = field(default_factory=list)
    seed: int = 0
    load_before: List[float] = field(default_factory=list)  # the 1-minute load average as each session began

    @property
    def label(self) -> str:
        return f"{self.variant} / {self.backend} / seed {self.seed}"

    @property
    def epoch_seconds(self) -> float:
        return sum(r["train_s"] for r in self.rows) / len(self.rows)

    @property
    def final(self) -> dict:
        return self.rows[-1]

    @property
    def gap(self) -> float:
        """Final training accuracy less final validation accuracy (training accuracy: over the last epoch's
        batches as they were trained on, dropout on)."""
        return self.final["train_acc"] - self.final["val_acc"]


# what a run folder must share with the command to be taken up again; its epochs may only grow (it continues)
SAME_SETTINGS = ("backend", "recipe", "lr") + FIXED_ON_RESUME
LOADS_FILE = "compare.json"  # in a run folder: the load average before each of its training sessions
QUIET_POLL_S = 15.0


def run_folder(out: str, variant: str, backend: str, seed: int, named_by_seed: bool) -> str:
    """``out/runs/<variant>-<backend>-s<seed>``, or ``out/runs/<variant>-<backend>`` for a single ``--seed``."""
    return os.path.join(out, "runs", f"{variant}-{backend}" + (f"-s{seed}" if named_by_seed else ""))


def existing_run(folder: str, settings: dict) -> Optional[dict]:
    """The state file of the run already in ``folder`` (None where there is none), which must have the command's
    ``settings`` (``SAME_SETTINGS``, and no more epochs than they ask for)."""
    try:
        ckpt = find_checkpoint(folder)
    except FileNotFoundError:
        return None
    state = read_state(ckpt)
    theirs = dict(state["settings"], backend=state["backend"])
    diff = [f"{k}={theirs.get(k)!r} (the command has {settings[k]!r})" for k in SAME_SETTINGS
            if theirs.get(k) != settings[k]]
    if theirs["epochs"] > settings["epochs"]:
        diff.append(f"epochs={theirs['epochs']} (the command has {settings['epochs']}; a run continues to more "
                    f"epochs, never to fewer)")
    if diff:
        raise ValueError(f"expected {folder} to hold a run with the command's settings, got {', '.join(diff)}: "
                         f"choose another --out, or remove that folder to train it again")
    return state


def _load_1min() -> Optional[float]:
    loads = load_average()
    return loads[0] if loads else None


def wait_quiet(limit: Optional[float], wait_s: float, label: str) -> Optional[float]:
    """The 1-minute load average before a run (None where the system has none).  With ``limit``, a load above it
    is waited out for up to ``wait_s`` seconds (polled every ``QUIET_POLL_S``), then refused."""
    load = _load_1min()
    if limit is None or (load is not None and load <= limit):
        return load
    if load is None:
        raise ValueError(f"expected a load average to hold --require-quiet {limit:g} against, got none on this "
                         f"system")
    print(f"== {label}: the 1-minute load is {load:.2f}, above --require-quiet {limit:g}; waiting up to "
          f"{wait_s:g} s for it to fall", flush=True)
    end = time.monotonic() + wait_s
    while load > limit and time.monotonic() < end:
        time.sleep(max(0.0, min(QUIET_POLL_S, end - time.monotonic())))
        load = _load_1min()
    if load > limit:
        raise ValueError(f"expected a 1-minute load average of at most {limit:g} before {label}, got {load:.2f} "
                         f"after waiting {wait_s:g} s (--quiet-wait); the runs that finished are kept, and the same "
                         f"command carries on from there")
    return load


def _loads_before(folder: str) -> List[float]:
    path = os.path.join(folder, LOADS_FILE)
    return list(read_json(path).get("load_before", [])) if os.path.isfile(path) else []


def describe_model(mod, variant: str, init: str, image_size: int, seed: int = 0) -> tuple:
    """(parameters counted by the backend ``mod``, multiply-adds per image from the spec, the backend's shape
    table) of ``variant`` at ``image_size``: what a comparison shows of a run besides its training."""
    model = mod.NiN(variant=variant, seed=seed, init=init, image_size=image_size)
    shapes = mod.layer_shapes(model, batch_shape(mod.DATA_FORMAT, 1, model.in_channels, image_size))
    return mod.num_params(model), resources(build_spec(variant), image_size).totals["macs"], shapes


@dataclass(frozen=True)
class CompareSettings:
    """What every run of a comparison shares, and how the comparison goes.

    ``training``: ``fit``'s settings for every run (the recipe, and what overrides it: epochs, image size, batch
    size, lr, init, schedule, warm-up, limits, device, precision, data folder); ``seeds``: one run per
    (variant, backend, seed), in a folder named by the seed where ``named_by_seed`` (``run_folder``);
    ``require_quiet`` and ``quiet_wait``: ``wait_quiet``'s limit and wait before each run that trains."""

    training: Mapping[str, object] = field(default_factory=lambda: {"recipe": "quick"})
    seeds: Sequence[int] = (0,)
    named_by_seed: bool = False
    require_quiet: Optional[float] = None
    quiet_wait: float = 600.0
    progress: bool = True


def run_all(names: Sequence[str], variants: Sequence[str], out: str, settings: CompareSettings) -> List[Run]:
    """Train every (variant, backend, seed) with the same ``settings``, seed by seed; each run writes to
    ``run_folder(...)``.

    Resumable: a run folder whose checkpoint has the last epoch is read, not trained again; one with an earlier
    checkpoint is continued from it; one with other settings is refused before anything trains.  The 1-minute
    load average is read before each run that trains (``wait_quiet``: with ``settings.require_quiet``, a higher
    one is waited out for up to ``settings.quiet_wait`` seconds, then refused)."""
    s, t = settings, dict(settings.training)
    for v in variants:
        check_variant(v)
    mods = [registry.load(n) for n in names]  # fail before any training when a framework is missing
    recipe = t.get("recipe", "quick")
    chosen = recipes.resolve(recipe, **{k: t.get(k) for k in recipes.RECIPE_KEYS})
    common = dict(chosen, limit_train=t.get("limit_train"), limit_val=t.get("limit_val"),
                  precision=t.get("precision", "auto"), recipe=recipe)
    plan = []  # (seed, variant, module, folder, state of the run already there)
    for seed in s.seeds:
        for variant in variants:
            for mod in mods:
                folder = run_folder(out, variant, mod.BACKEND, seed, s.named_by_seed)
                state = existing_run(folder, dict(common, variant=variant, seed=seed, backend=mod.BACKEND))
                plan.append((seed, variant, mod, folder, state))
    about = {}  # (variant, backend) -> (parameters, multiply-adds, shapes), the same for every seed
    runs = []
    for seed, variant, mod, folder, state in plan:
        if (variant, mod.BACKEND) not in about:
            about[(variant, mod.BACKEND)] = describe_model(mod, variant, chosen["init"], chosen["image_size"], seed)
        params, macs, shapes = about[(variant, mod.BACKEND)]
        run = Run(variant, mod.BACKEND, params, macs, shapes, seed=seed, load_before=_loads_before(folder))
        if state is not None and state["epoch"] == chosen["epochs"]:
            print(f"== {run.label}: finished ({state['epoch']} of {chosen['epochs']} epochs) in {folder}, "
                  f"not trained again", flush=True)
            run.rows = state["rows"]
            runs.append(run)
            continue
        load = wait_quiet(s.require_quiet, s.quiet_wait, run.label)
        print(f"== {run.label}: {params:,} parameters, {macs:,} multiply-adds per image"
              + (f"; continuing from epoch {state['epoch']}" if state else "")
              + (f"; load {load:.2f}" if load is not None else ""), flush=True)
        run.rows = mod.fit(variant=variant, seed=seed, device=t.get("device", "auto"), data_dir=t.get("data_dir"),
                           out=folder, resume=folder if state else None, progress=s.progress, **common)
        if load is not None:
            run.load_before.append(load)
            write_json(os.path.join(folder, LOADS_FILE), dict(load_before=run.load_before))
        runs.append(run)
    return runs


def groups(runs: Sequence[Run]) -> Dict[tuple, List[Run]]:
    """(variant, backend) -> its runs, one per seed, in the runs' order."""
    out: Dict[tuple, List[Run]] = {}
    for r in runs:
        out.setdefault((r.variant, r.backend), []).append(r)
    return out


def _used(runs: Sequence[Run], key: str) -> str:
    """What the runs resolved a setting to ('bf16', or 'fp32 (mxnet), bf16 (torch, tf)' when they differ)."""
    by_value: Dict[str, List[str]] = {}
    for r in runs:
        by_value.setdefault(str(r.final.get(key, "?")), []).append(r.backend)
    if len(by_value) == 1:
        return next(iter(by_value))
    return ", ".join(f"{v} ({', '.join(sorted(set(b)))})" for v, b in by_value.items())


def span(values: Sequence[float], digits: int = 1) -> str:
    """'1.9', or '1.9–4.0' where the values differ at that precision; '?' for none."""
    if not values:
        return "?"
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}–{high}"


def _load(run: Run) -> str:
    """The 1-minute load averages after the run's epochs ('1.9' or '1.9–4.0'; '?' where not recorded)."""
    return span([row["load_avg"][0] for row in run.rows if row.get("load_avg")])


def _over_seeds(runs: Sequence[Run]) -> List[str]:
    """The section that sums up each (variant, backend) over its seeds; none where every one has a single seed."""
    grouped = groups(runs)
    if all(len(g) == 1 for g in grouped.values()):
        return []
    body = []
    for (variant, backend), g in grouped.items():
        accs = [r.final["val_acc"] for r in g]
        body.append([variant, backend, ",".join(str(r.seed) for r in g), f"{statistics.mean(accs):.4f}",
                     span(accs, 4), f"{statistics.mean(r.gap for r in g):+.4f}",
                     f"{statistics.mean(r.epoch_seconds for r in g):.1f}",
                     span([x for r in g for x in r.load_before])])
    return ["## Over seeds", "",
            table(["variant", "backend", "seeds", "final val acc (mean)", "min–max", "train − val acc (mean)",
                   "s / epoch (mean)", "load before"], body), "",
            "Seeds change the initial weights, the batch order and the dropout masks; the spread between seeds "
            "is the yardstick for a difference between variants or backends.", ""]


def _ordered(runs: Sequence[Run]) -> List[Run]:
    """The runs by variant, then backend (each in the order first met), then seed."""
    variants = {v: i for i, v in enumerate(dict.fromkeys(r.variant for r in runs))}
    names = {n: i for i, n in enumerate(dict.fromkeys(r.backend for r in runs))}
    return sorted(runs, key=lambda r: (variants[r.variant], names[r.backend], r.seed))


def report(runs: Sequence[Run], settings: Dict[str, object], note: str = "") -> str:
    """The comparison as markdown; ``note``: a paragraph placed after the settings (where the runs come from)."""
    runs = _ordered(runs)
    variants = list(dict.fromkeys(r.variant for r in runs))
    names = list(dict.fromkeys(r.backend for r in runs))
    firsts = [g[0] for g in groups(runs).values()]
    parts = ["# NiN variants across frameworks", "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()) + ".",
             f"Resolved: device {_used(runs, 'device')}; precision {_used(runs, 'precision')}; "
             f"{runs[0].final.get('n_train', '?')} training and {runs[0].final.get('n_val', '?')} validation images.",
             "Every run of a seed trains on the same images in the same batch order from the same initial weights.",
             *(["", note] if note else []), "", "## Results", "",
             table(["variant", "backend", "seed", "parameters (framework)", "multiply-adds / image",
                    "s / epoch (train)", "load before", "load (1 min)", "images/s", "final train loss",
                    "final val loss", "final val acc", "train − val acc"],
                   [[r.variant, r.backend, r.seed, f"{r.params:,}", f"{r.macs:,}", f"{r.epoch_seconds:.1f}",
                     span(r.load_before), _load(r), f"{r.final['images_per_s']:.1f}",
                     f"{r.final['train_loss']:.4f}", f"{r.final['val_loss']:.4f}", f"{r.final['val_acc']:.4f}",
                     f"{r.gap:+.4f}"] for r in runs]),
             "",
             "Times are comparable only between runs made at the same load: 'load before' is the machine's 1-minute "
             "load average as the run started (one figure per session of a resumed run), 'load (1 min)' the same "
             "after each epoch (above the number of cores, another job shared them).  Train − val acc: the final "
             "epoch's training accuracy (over its batches as trained, dropout on) less its validation accuracy.",
             ""] + _over_seeds(runs) + [
             "![loss and accuracy per epoch](curves.png)", "",
             "![parameters and multiply-adds](resources.png)", "", "![time per epoch and accuracy](results.png)", "",
             "## Per-epoch metrics", "",
             table(["variant", "backend", "seed", "epoch", "train loss", "train acc", "val loss", "val acc",
                    "images/s"],
                   [[r.variant, r.backend, r.seed, row["epoch"], f"{row['train_loss']:.4f}",
                     f"{row['train_acc']:.4f}", f"{row['val_loss']:.4f}", f"{row['val_acc']:.4f}",
                     f"{row['images_per_s']:.1f}"] for r in runs for row in r.rows]),
             "", "## Shape tables (NCHW vs NHWC)", ""]
    for variant in variants:
        vruns = [r for r in firsts if r.variant == variant]
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
CHANCE = 0.2  # a final validation accuracy below twice chance (10 classes): the run did not learn


def learned(runs) -> tuple:
    """(the runs that learned, those whose final validation accuracy stayed below ``CHANCE``)."""
    return ([r for r in runs if r.final["val_acc"] >= CHANCE],
            [r for r in runs if r.final["val_acc"] < CHANCE])


def figure(width: float, height: float, columns: int):
    """A figure with an Agg canvas (no pyplot, so a notebook's own backend is left alone) and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, columns)


def colours(count: int):
    """``count`` distinct colours (matplotlib's tab10, or tab20 beyond 10)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def plot(runs: Sequence[Run], out: str) -> None:
    """curves.png (one colour per variant, one line style per backend, integer epochs, legends beside the
    plots), resources.png (linear axes from zero) and results.png.  Over several seeds a curve is the mean with a
    band from the lowest to the highest seed, and a bar the mean with an error bar from the lowest to the highest.
    In curves.png a seed that stayed at chance (``CHANCE``) is a thin line of its own, labelled, outside the mean
    and the band, which span the seeds that learned."""
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    variants = list(dict.fromkeys(r.variant for r in runs))
    names = list(dict.fromkeys(r.backend for r in runs))
    colour = dict(zip(variants, colours(len(variants))))
    style = {n: LINE_STYLES[i % len(LINE_STYLES)] for i, n in enumerate(names)}
    marker = {n: MARKERS[i % len(MARKERS)] for i, n in enumerate(names)}

    grouped = groups(runs)
    several = any(len(g) > 1 for g in grouped.values())
    at_chance = []
    fig, axes = figure(15, 4.5, 3)
    for (variant, backend), g in grouped.items():
        n = min(len(r.rows) for r in g)
        epochs = [row["epoch"] for row in g[0].rows[:n]]
        good, stalled = learned(g)
        for ax, key in zip(axes, ("train_loss", "val_loss", "val_acc")):
            if good:
                values = np.array([[row[key] for row in r.rows[:n]] for r in good])
                ax.plot(epochs, values.mean(axis=0), color=colour[variant], linestyle=style[backend],
                        marker=marker[backend], markersize=4, linewidth=1.4)
                if len(good) > 1:
                    ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=colour[variant],
                                    alpha=0.15, linewidth=0)
            for r in stalled:
                ax.plot(epochs, [row[key] for row in r.rows[:n]], color=colour[variant], linestyle=(0, (1, 1)),
                        marker="x", markersize=4, linewidth=0.8)
        at_chance += [(variant, backend, r.seed) for r in stalled]
    for ax, title in zip(axes, ("train loss", "val loss", "val acc")):
        ax.set_title(title + (" (mean over seeds; band: min–max)" if several and not at_chance else ""))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if several and at_chance:
        fig.suptitle("mean over the seeds that learned; band: their min–max", fontsize=11)
    by_variant = [Line2D([], [], color=colour[v], linewidth=3, label=v) for v in variants]
    by_backend = [Line2D([], [], color="0.3", linestyle=style[n], marker=marker[n], label=n) for n in names]
    fig.legend(handles=by_variant, title="variant (colour)", loc="outside right upper", fontsize=8)
    fig.legend(handles=by_backend, title="backend (line)", loc="outside right lower", fontsize=8)
    if at_chance:
        stalled = [Line2D([], [], color=colour[v], linestyle=(0, (1, 1)), marker="x", linewidth=0.8,
                          label=f"{v} / {b}, seed {seed}") for v, b, seed in at_chance]
        fig.legend(handles=stalled, title="at chance: own line,\nnot in mean or band", loc="outside right center",
                   fontsize=8, title_fontsize=8)
    save_png(fig, os.path.join(out, "curves.png"))

    fig, axes = figure(12, 4.5, 2)
    first = {v: next(r for r in runs if r.variant == v) for v in variants}
    for ax, values, title, unit in ((axes[0], [first[v].params for v in variants], "parameters", 1e6),
                                    (axes[1], [first[v].macs for v in variants], "multiply-adds per image", 1e6)):
        bars = ax.bar(variants, [v / unit for v in values], color=[colour[v] for v in variants])
        ax.bar_label(bars, [f"{v / unit:.2f} M" for v in values], fontsize=8)
        ax.set_title(title)
        ax.set_ylabel("millions")
        ax.set_ylim(bottom=0)  # a linear axis from zero: bar heights compare as the numbers do
        ax.tick_params(axis="x", rotation=45)
    save_png(fig, os.path.join(out, "resources.png"))

    fig, axes = figure(12, 4.5, 2)
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        xs = [i + j * width for i in range(len(variants))]
        for ax, value in ((axes[0], lambda r: r.epoch_seconds), (axes[1], lambda r: r.final["val_acc"])):
            # a variant this backend did not run gets no bar (NaN)
            values = [[value(r) for r in grouped.get((v, name), ())] or [math.nan] for v in variants]
            means, lows, highs = (np.array([f(v) for v in values]) for f in (statistics.mean, min, max))
            ax.bar(xs, means, width, label=name, yerr=[means - lows, highs - means] if several else None,
                   capsize=3 if several else 0)
    for ax, title in zip(axes, ("seconds per epoch (training)", "final validation accuracy")):
        ax.set_title(title + (" (mean, min–max over seeds)" if several else ""))
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(variants))], variants, rotation=45)
        ax.set_ylim(bottom=0)
    fig.legend(*axes[0].get_legend_handles_labels(), title="backend", loc="outside right upper", fontsize=8)
    save_png(fig, os.path.join(out, "results.png"))


def save_png(fig, path: str) -> None:
    """Write ``fig`` to ``path`` as a PNG, atomically (a reader never sees half a file)."""
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")


def write(runs: Sequence[Run], out: str, settings: Dict[str, object], note: str = "") -> str:
    plot(runs, out)
    path = os.path.join(out, "report.md")
    with atomic_path(path, ".md") as tmp, open(tmp, "w") as f:
        f.write(report(runs, settings, note))
    return path
