"""The exercise study's report: per exercise of the chapter, a table of its variants over seeds and a plot.

Not a test.  Reads the rows ``benchmarks/study.py`` appends to ``benchmarks/results/study.jsonl`` and writes
``report.md`` and ``ex1.png``, ``ex2.png``, ``ex3.png``, ``ex5.png``, ``ex6.png`` into ``--out``, each file
atomically; runs at an image size other than the recipe's (``--image-size 131``) get sections and plots of their
own (``ex3-131px.png``).  A table has one line per (variant, backend, recipe, init, label): the seeds, the final test
accuracy (mean and min–max over the seeds), the train − test accuracy gap, seconds per epoch with the load
average during the runs, parameters and multiply-adds per image (analytic, at the rows' image size).  A variant
of the exercise without a row yet is listed as not run yet.  A plot shows test accuracy per epoch: per variant,
in its most-seeded backend, the mean over seeds with a min–max band (solid: the recipe's init on all the data,
dash-dot with triangles: an init override, dashed: a reduced run); other backends' runs as thin dotted lines; a
seed that stayed at chance as a thin line of its own, outside the mean and the band.
The chapter's network trained by ``benchmarks/accuracy.py`` with the same recipe, in full and in fp32
(``--accuracy``), joins its rows for the seeds the study did not run itself.
``--compare DIR`` also writes the full runs of the recipe with its own init as ``nin compare``'s report and
plots (``docs/compare``).  A section on exercise 4 gives, from the quiet-machine runs of
``benchmarks/variant_speed.py`` (``--speed``), the time per epoch against the multiply-adds (achieved GFLOP/s, a
fraction of the CPU's nominal fp32 peak) and the training process's memory next to the analytic training memory.  A last section and ``dead.png`` follow the
class block's dead channels along the first epoch, from the traces ``python -m benchmarks.dead_channels --trace``
appends to ``benchmarks/results/dead_channels.jsonl`` (``--dead``).

    python -m benchmarks.study_report                                   # -> docs/study/report.md
    python -m benchmarks.study_report --results /tmp/study.jsonl --out /tmp/study
    python -m benchmarks.study_report --compare docs/compare             # and nin compare's report of the runs
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Optional

from nin_common.arch.costs import resources
from nin_common.arch.variants import VARIANTS, build_spec
from nin_common.engine.registry import BACKENDS
from nin_common.engine import recipes, registry
from nin_common.tools import compare
from nin_common.tools.compare import colours, figure, save_png, span
from nin_common.util.files import atomic_path
from nin_common.util.markdown import table

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RESULTS = os.path.join(HERE, "results", "study.jsonl")
EXERCISES = {  # plot name -> (title, variants compared)
    "ex1": ("Exercise 1: how many 1×1 convolutions per block", ("chapter", "1x1-0", "1x1-1", "1x1-3")),
    "ex2": ("Exercise 2: 3×3 instead of 1×1 convolutions", ("chapter", "3x3")),
    "ex3": ("Exercise 3: a fully connected head instead of global average pooling",
            ("chapter", "fc-head", "fc-head-wide")),
    "ex5": ("Exercise 5: 384×5×5 to 10×5×5 in one step or gradually", ("chapter", "gradual")),
    "ex6": ("Exercise 6: a deeper NiN in the spirit of VGG-11", ("chapter", "nin-vgg11")),
}
REQUIRED = ("variant", "backend", "seed", "recipe", "label", "precision", "image_size", "val_acc", "train_acc",
            "epoch_s", "curve")
HEADER = ["variant", "backend", "recipe", "init", "seeds", "test acc (mean)", "min–max", "train − test (mean)",
          "parameters", "multiply-adds / image", "peak memory (max)", "precision", "label",
          "s / epoch (quiet machine)"]
SPEED = os.path.join(HERE, "results", "variant_speed.jsonl")  # benchmarks/variant_speed.py: times on a quiet machine
ACCURACY = os.path.join(HERE, "results", "accuracy.jsonl")  # benchmarks/accuracy.py: the recipe's own runs
DEAD = os.path.join(HERE, "results", "dead_channels.jsonl")  # benchmarks/dead_channels.py: traces and end counts
DEAD_HEADER = ["variant", "init", "backend", "seed", "channels", "dead at the start", "most dead (after step)",
               "dead after epoch 1", "dead at the end of training"]


def read_speed(path: str) -> dict:
    """(variant, backend, recipe, image size, precision) -> the last row ``benchmarks/variant_speed.py`` wrote for
    it (none: {})."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {(r["variant"], r["backend"], r["recipe"], r["image_size"], r["precision"]): r for r in rows}


def read_dead(path: str) -> list:
    """The rows ``benchmarks/dead_channels.py`` wrote (none: [])."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dead_section(dead: list) -> str:
    """Exercises 3 and 5: the last block's dead channels along the first epoch (``--trace`` rows), per variant
    and init, with the count after the whole training where a run's end was counted (same variant, init, seed,
    backend and recipe)."""
    traces = [r for r in dead if r.get("kind") == "trace"]
    ends = {(r["variant"], r["init"], r["seed"], r["backend"], r.get("recipe")): r for r in dead
            if "dead_end" in r and r.get("epoch") == r.get("epochs")}
    body = []
    for r in traces:
        worst = max(range(len(r["dead"])), key=lambda i: (r["dead"][i], -i))
        end = ends.get((r["variant"], r["init"], r["seed"], r["backend"], r.get("recipe")))
        after1 = next((e["dead"] for e in r["epoch_ends"] if e["epoch"] == 1), None)
        body.append([f"`{r['variant']}`", r["init"], r["backend"], str(r["seed"]), str(r["channels"]),
                     str(r["dead"][0]), f"{r['dead'][worst]} ({r['steps'][worst]})",
                     "–" if after1 is None else str(after1),
                     "not counted" if end is None else f"{end['dead_end']} (epoch {end['epoch']})"])
    if not body:
        return "## Dead class channels along training\n\nNot traced yet (`python -m benchmarks.dead_channels --trace`).\n"
    steps = sorted({r["steps"][-1] for r in traces})
    text = ("The block the classes are read from (for `fc-head-wide`, the 384-channel block before the fully "
            "connected layer): a channel that is ≤ 0 on all of 1,000 test images is dead, and passes no gradient. "
            f"Counted after SGD steps 0, 10, 25, 50, 100 and every 100 to the end of epoch 1 (step "
            f"{', '.join(map(str, steps))}), on the weights `nin train` would have there (`python "
            "-m benchmarks.dead_channels --trace VARIANT`), and on the run's last checkpoint.")
    return "\n".join(["## Dead class channels along training", "", text, "", table(DEAD_HEADER, body), "",
                      "![Dead channels along the first epoch](dead.png)", ""])


def plot_dead(dead: list, path: str) -> None:
    """Dead channels of the class block (as a fraction of its channels) against the SGD step, one line per trace."""
    traces = [r for r in dead if r.get("kind") == "trace"]
    fig, ax = figure(10.5, 4.5, 1)
    for r, colour in zip(traces, colours(len(traces))):
        ax.plot(r["steps"], [d / r["channels"] for d in r["dead"]], color=colour, marker="o", markersize=3,
                linewidth=1.2, label=f"{r['variant']}, {r['init']} ({r['channels']} channels), {r['backend']}, "
                                     f"seed {r['seed']}")
    if not traces:
        ax.text(0.5, 0.5, "not traced yet", transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set(title="Dead channels of the class block along the first epoch", xlabel="SGD step (batch 32)",
           ylabel="dead channels (fraction)")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    if traces:
        ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes, off the data
    save_png(fig, path)


def read_rows(path: str) -> list:
    """The study's rows; a missing file, a line that is not a JSON object or a row short of a field is a
    ValueError saying what was expected and what came."""
    if not os.path.isfile(path):
        raise ValueError(f"expected the study's results (JSON lines from benchmarks/study.py) at {path}, "
                         f"got no such file")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise ValueError(f"expected a JSON object on every line of {path}, got line {number}: "
                                 f"{line.strip()[:60]!r} ({err})") from None
            missing = [k for k in REQUIRED if k not in row] if isinstance(row, dict) else None
            if missing is None or missing:
                got = f"one without {', '.join(missing)}" if missing else f"a JSON {type(row).__name__}"
                raise ValueError(f"expected a study row on line {number} of {path} ({', '.join(REQUIRED)}), "
                                 f"got {got}")
            rows.append(row)
    return rows


def accuracy_rows(path: str, recipe: str = "quick-b32") -> list:
    """The chapter's network trained by ``benchmarks/accuracy.py`` with the study's recipe, in full and in fp32
    (rows labelled with the recipe): the same experiment as the study's ``chapter`` runs, as study rows.  They
    come before the study's own, so a seed the study ran itself keeps the study's row (``groups``)."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                rows.append(json.loads(line)) if line.strip() else None
            except ValueError as err:
                raise ValueError(f"expected a JSON object on every line of {path}, got line {number}: "
                                 f"{line.strip()[:60]!r} ({err})") from None
    out = []
    for r in rows:
        st = r.get("settings", {})
        if (r.get("label") != recipe or r.get("recipe") != recipe or r.get("precision") != "fp32"
                or st.get("variant", "chapter") != "chapter" or (r.get("workers") or 1) != 1):
            continue
        figures = zip(r["train_loss"], r["train_acc"], r["val_loss"], r["val_acc"])
        curve = [dict(epoch=i + 1, train_loss=tl, train_acc=ta, val_loss=vl, val_acc=va)
                 for i, (tl, ta, vl, va) in enumerate(figures)]
        out.append(dict(variant="chapter", backend=r["backend"], seed=st.get("seed", 0), recipe=recipe,
                        init_override=None, limit_train=None, label="full", init=st.get("init"), precision="fp32",
                        image_size=st.get("image_size"), batch_size=st.get("batch_size"), epochs=len(curve),
                        n_train=r.get("n_train"), n_val=r.get("n_val"), val_acc=r["val_acc"][-1],
                        val_loss=r["val_loss"][-1], train_acc=r["train_acc"][-1], train_loss=r["train_loss"][-1],
                        epoch_s=r["train_s"], curve=curve, peak_rss_mb=r.get("peak_rss_mb"),
                        load_before=r.get("load_avg_before"), load_after=(r.get("load_avg") or [None])[-1],
                        load_per_epoch=r.get("load_avg"), machine=r.get("machine", {}), commit=r.get("commit"),
                        date=r.get("date"), cpu_flags=r.get("cpu_flags"), device=r.get("device"),
                        source="benchmarks/accuracy.py"))
    return out


def key(row: dict) -> tuple:
    """What one table line stands for: (variant, backend, recipe, init override, label)."""
    return row["variant"], row["backend"], row["recipe"], row.get("init_override"), row["label"]


def groups(rows) -> dict:
    """key -> its rows by seed; a seed met twice keeps its last row (a run made again)."""
    by_seed: dict = {}
    for r in rows:
        by_seed.setdefault(key(r), {})[r["seed"]] = r
    return {k: [seeds[s] for s in sorted(seeds)] for k, seeds in by_seed.items()}


def over_seeds(runs) -> dict:
    """The final test accuracy's mean, min and max over the runs and the mean train − test gap."""
    accs = [r["val_acc"] for r in runs]
    return dict(seeds=[r["seed"] for r in runs], mean=statistics.mean(accs), min=min(accs), max=max(accs),
                gap=statistics.mean(r["train_acc"] - r["val_acc"] for r in runs))


STALLED = 0.2  # a final test accuracy below twice chance (10 classes): the run did not learn


def _seeds(runs) -> str:
    """The seeds, and those whose run ended without learning (their accuracy still counts in the mean)."""
    seeds = ",".join(str(r["seed"]) for r in runs)
    stalled = [str(r["seed"]) for r in runs if r["val_acc"] < STALLED]
    return seeds + (f" ({','.join(stalled)} at chance)" if stalled else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _peak(runs) -> str:
    """The largest peak resident memory of the runs that recorded one (the training process, framework and data
    included), or '?'."""
    peaks = [r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb")]
    return f"{max(peaks):,.0f} MiB" if peaks else "?"


def _joined(runs, field) -> str:
    return ", ".join(sorted({str(field(r)) for r in runs})) or "?"


# the variants the study trains in every backend (one seed in each but PyTorch): the chapter's, one per exercise
IN_EVERY_BACKEND = ("chapter", "1x1-0", "3x3", "fc-head", "gradual")


def by_size(rows) -> dict:
    """image size -> its rows: the size most rows have first (the recipe's), then the others in increasing order.
    A size other than the recipe's makes sections and plots of its own (an exercise asked where its question exists,
    exercises 3 and 5 at 131 px), never mixed into the recipe's."""
    sizes: dict = {}
    for r in rows:
        sizes.setdefault(r.get("image_size"), []).append(r)
    order = sorted(sizes, key=lambda size: (-len(sizes[size]), size or 0))
    return {size: sizes[size] for size in order[:1] + sorted(order[1:], key=lambda size: size or 0)}


def title_of(name: str, size=None) -> str:
    """The exercise's title, and at a size other than the recipe's that size: 'Exercise 3 at 131 px: ...'."""
    title = EXERCISES[name][0]
    return title.replace(":", f" at {size} px:", 1) if size else title


def section(name: str, grouped: dict, speed: Optional[dict] = None, size=None) -> str:
    """One exercise's table over seeds and its plot; ``size`` for a section of runs at a size other than the
    recipe's (their plot ``ex3-131px.png``; the backends not run there are not listed one by one)."""
    title, variants = title_of(name, size), EXERCISES[name][1]
    body, used, timed = [], [], []
    speed = speed or {}
    for variant in variants:
        mine = sorted((k for k in grouped if k[0] == variant), key=lambda k: (-len(grouped[k]), str(k)))
        if not mine:
            body.append([variant] + ["—"] * 3 + ["not run yet"] + ["—"] * (len(HEADER) - 5))
        elif variant in IN_EVERY_BACKEND and not size:
            ran = {k[1] for k in mine}
            body += [[variant, b, "—", "—", "not run yet"] + ["—"] * (len(HEADER) - 5)
                     for b in BACKENDS if b not in ran]
        for k in mine:
            runs, s = grouped[k], over_seeds(grouped[k])
            quiet = speed.get((variant, k[1], k[2], runs[0]["image_size"], runs[0]["precision"]))
            timed += [quiet] if quiet else []
            costs = resources(build_spec(variant), runs[0]["image_size"], 1).totals
            body.append([variant, k[1], k[2], k[3] or "recipe's", _seeds(runs), f"{s['mean']:.4f}",
                         span([s["min"], s["max"]], 4), f"{s['gap']:+.4f}", f"{costs['params']:,}",
                         f"{costs['macs']:,}", _peak(runs),
                         _joined(runs, lambda r: r["precision"]),
                         k[4] if k[4] == "full" else f"{k[4]} ({_joined(runs, lambda r: r.get('n_train'))} images)",
                         f"{quiet['epoch_s_60000']:.1f}" if quiet else "—"])
            used += runs
    cpu = _joined(used, lambda r: f"{r.get('machine', {}).get('cpu', '?')} "
                                  f"({r.get('machine', {}).get('cpu_count', '?')} cores)")
    origin = (f"Recipe {_joined(used, lambda r: r['recipe'])}, precision {_joined(used, lambda r: r['precision'])}, "
              f"{_joined(used, lambda r: r['image_size'])} px; CPU {cpu}; commits "
              f"{_joined(used, lambda r: r.get('commit') or '?')}." if used else
              f"No runs yet: `python -m benchmarks.study --variants {','.join(variants)}`.")
    if timed:
        loads = [x for r in timed for x in (r["load_before"][0], r["load_after"][0])]
        origin += (f" Quiet times (`benchmarks/variant_speed.py`: 60,000 images at the rate of a short run): CPU "
                   f"{_joined(timed, _cpu)}, 1-minute load {span(loads)}, "
                   f"commit {_joined(timed, lambda r: r.get('commit') or '?')}.")
    return "\n".join([f"## {title}", "", table(HEADER, body), "", origin, "", f"![{title}]({plot_name(name, size)})",
                      ""])


def plot_name(name: str, size=None) -> str:
    return f"{name}-{size}px.png" if size else f"{name}.png"


def sections(rows) -> list:
    """(exercise, its rows grouped, size) per section: every exercise at the recipe's size, then at each other size
    the exercises with a run of one of their variants there, besides the chapter's (size None for the recipe's)."""
    out = []
    for i, (size, mine) in enumerate(by_size(rows).items()):
        grouped = groups(mine)
        out += [(name, grouped, size if i else None) for name, (_, variants) in EXERCISES.items()
                if not i or any(k[0] in variants[1:] for k in grouped)]
    return out


def _cpu(row: dict) -> str:
    """The CPU a row ran on, with the vector extensions that decide its fp32 and bf16 rates."""
    flags = set(row.get("cpu_flags") or ())
    width = ("AVX-512 with BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else
             "AVX2" if "avx2" in flags else "")
    return row.get("machine", {}).get("cpu", "?") + (f" ({width})" if width else "")


def _mib(value) -> str:
    return "?" if value is None else f"{value:,.0f}"


def resources_section(speed: dict) -> str:
    """Exercise 4 on the training itself: per (variant, backend) timed by benchmarks/variant_speed.py, the rate
    against the multiply-adds and the process's resident memory against the analytic training memory."""
    title = "## Exercise 4 measured on training: time against multiply-adds, memory against the analytic count"
    order = list(dict.fromkeys(v for _, variants in EXERCISES.values() for v in variants))
    rows = sorted(speed.values(), key=lambda r: (r["image_size"], r["precision"] != "fp32", r["backend"],
                                                 order.index(r["variant"]) if r["variant"] in order else len(order),
                                                 r["variant"]))
    if not rows:
        return "\n".join([title, "", "No quiet-machine runs yet: `python -m benchmarks.variant_speed --backend all`.",
                          ""])
    header = ["variant", "backend", "CPU", "px", "precision", "batch", "images / s", "s / 60,000-image epoch", "multiply-adds / image",
              "achieved GFLOP/s", "of the fp32 peak", "training memory, analytic (MiB)",
              "resident when ready (MiB)", "resident peak in training (MiB)", "peak − ready (MiB)", "load (1 min)"]
    body = []
    for r in rows:
        share = r.get("fraction_of_fp32_peak")
        ready, peak = r.get("rss_start_mb"), r.get("train_peak_rss_mb")
        body.append([r["variant"], r["backend"], _cpu(r), str(r["image_size"]), r["precision"], str(r["batch_size"]),
                     f"{r['images_per_s']:,.0f}", f"{r['epoch_s_60000']:.0f}",
                     f"{r['macs_per_image']:,}", f"{r['achieved_gflops']:.1f}",
                     f"{share:.0%}" if share else "?", _mib(r.get("train_memory_analytic_mb")), _mib(ready),
                     _mib(peak), _mib(peak - ready if ready is not None and peak is not None else None),
                     span([r["load_before"][0], r["load_after"][0]])])
    peaks = sorted({f"{r['nominal_fp32_peak_gflops']:g} GFLOP/s" for r in rows if r.get("nominal_fp32_peak_gflops")})
    origin = (f"One `nin train` per line (`benchmarks/variant_speed.py`: recipe {_joined(rows, lambda r: r['recipe'])}"
              f", 2 epochs of {_joined(rows, lambda r: r['images'])} "
              f"training images and 256 test images; the rate is the second epoch's, without the first's tracing and "
              f"compiling), on CPU {_joined(rows, _cpu)} with {_joined(rows, lambda r: r.get('threads'))} "
              f"threads, nominal fp32 peak {', '.join(peaks) or '?'}"
              + ("; a bf16 row's fraction is of the fp32 peak too, and passes 100 %: a bf16 dot product does two "
                 "multiply-adds per fp32 lane, and the cores may run above the nominal clock"
                 if any(r["precision"] == "bf16" for r in rows) else "")
              + "; commit "
              f"{_joined(rows, lambda r: r.get('commit') or '?')}.  Achieved GFLOP/s = images/s × 3 passes (forward, "
              "input gradients, weight gradients) × 2 FLOP × the multiply-adds of an image.  Memory is the training "
              "process's resident set: when data, model and trainer are ready, and its peak from there to the end of "
              "the run (its training steps and the evaluations); the difference is what training "
              "added, next to the analytic training memory (parameters, gradients, the activations kept for the "
              "backward pass) at the same batch and image size.  Beyond the analytic count it holds what each "
              "framework keeps besides: compiled programs and kernels (oneDNN primitives, XLA executables), the "
              "allocator's cached blocks, the batches in flight and the evaluation pass.")
    return "\n".join([title, "", table(header, body), "", origin, ""])


def report(rows, results: str, speed: Optional[dict] = None, dead: Optional[list] = None) -> str:
    # one seed of a variant at two image sizes is two runs
    grouped = {(k, size): runs for size, mine in by_size(rows).items() for k, runs in groups(mine).items()}
    borrowed = sum(1 for runs in grouped.values() for r in runs if r.get("source"))
    where = os.path.abspath(results)
    where = os.path.relpath(where, ROOT) if where.startswith(ROOT + os.sep) else results
    intro = ["# The chapter's exercises, trained to the end", "",
             f"{_count(sum(1 for runs in grouped.values() for r in runs if not r.get('source')), 'run')} from "
             f"`{where}` (written by `benchmarks/study.py`)"
             + (f" and {_count(borrowed, 'run')} of the chapter's network by `benchmarks/accuracy.py`: its full "
                "runs of the same recipe in fp32 (`benchmarks/results/accuracy.jsonl`), the same experiment, counted "
                "for the seeds the study did not run itself" if borrowed else "") + ".  "
             "Test accuracy is the final epoch's; train − test is the final epoch's training accuracy (over its "
             "batches as trained, dropout on) less its test accuracy.  Seconds per epoch are measured apart, on a "
             "quiet machine (`benchmarks/variant_speed.py`), for the study's runs share the cores with other work and "
             "are paused while anything is timed.  Parameters and multiply-adds per image are analytic, at the rows' "
             "image size.  Seeds change the initial weights, the batch order and the dropout masks: their spread "
             "is the yardstick for a difference between variants.  A seed marked *at chance* ended below "
             f"{STALLED:g} test accuracy: it did not learn, and it counts in the mean and the range.", ""]
    return "\n".join(intro + [section(name, mine, speed, size) for name, mine, size in sections(rows)]
                     + [resources_section(speed or {}),
                                                                                       dead_section(dead or [])])


def plot(name: str, grouped: dict, path: str, size=None) -> None:
    """Test accuracy per epoch of the exercise's variants (see the module docstring).  One colour per variant; in
    its most-seeded backend a line per (init, label): solid for the recipe's init on all the data, dash-dot with
    triangles for an init override (the fair start), dashed for a reduced run; other backends' runs as thin dotted
    lines.  A seed that stayed at chance (below ``STALLED``) is a thin line of its own, labelled, outside the mean
    and the band, which span the seeds that learned."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    title, variants = title_of(name, size), EXERCISES[name][1]
    fig, ax = figure(10.5, 4.5, 1)
    any_stalled = False
    for variant, colour in zip(variants, colours(len(variants))):
        mine = {k: runs for k, runs in grouped.items() if k[0] == variant}
        seeds = {}
        for k, runs in mine.items():
            seeds[k[1]] = seeds.get(k[1], 0) + len(runs)
        main = max(seeds, key=seeds.get, default=None)
        for (_, backend, _, init, label), runs in sorted(mine.items(), key=lambda kv: (kv[0][1] != main,
                                                                                              str(kv[0]))):
            tag = variant + "".join(f", {x}" for x in (init, label if label != "full" else None) if x)
            n = min(len(r["curve"]) for r in runs)
            epochs = [c["epoch"] for c in runs[0]["curve"][:n]]
            good = [r for r in runs if r["val_acc"] >= STALLED]
            stalled = [r for r in runs if r["val_acc"] < STALLED]
            any_stalled = any_stalled or bool(stalled)
            for r in stalled:
                ax.plot(epochs, [c["val_acc"] for c in r["curve"][:n]], color=colour, linestyle=(0, (1, 1)),
                        linewidth=0.9, marker="x", markersize=4,
                        label=f"{tag} / {backend}, seed {r['seed']}: at chance (not in the mean or band)")
            if not good:
                continue
            acc = np.array([[c["val_acc"] for c in r["curve"][:n]] for r in good])
            if backend == main:
                line = dict(linestyle="--" if label != "full" else "-.", marker="^", markersize=5) if init else \
                    dict(linestyle="--" if label != "full" else "-")
                which = (f"mean of {len(good)} seeds" + (" that learned" if stalled else "") if len(good) > 1
                         else f"seed {good[0]['seed']}")
                ax.plot(epochs, acc.mean(axis=0), color=colour, linewidth=1.6, label=f"{tag} / {backend} ({which})",
                        **line)
                if len(good) > 1:
                    ax.fill_between(epochs, acc.min(axis=0), acc.max(axis=0), color=colour, alpha=0.2,
                                    linewidth=0)
                continue
            for i, (r, values) in enumerate(zip(good, acc)):
                ax.plot(epochs, values, color=colour, linestyle=":", linewidth=0.9, marker="o", markersize=3,
                        label=f"{tag} / {backend} (seed{'s' * (len(good) > 1)} "
                              f"{','.join(str(x['seed']) for x in good)})" if i == 0 else None)
    if not grouped or not any(k[0] in variants for k in grouped):
        ax.text(0.5, 0.5, "not run yet", transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set(title=title, xlabel="epoch", ylabel="test accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1), title_fontsize=7.5,
                  title="band: min–max over the seeds that learned" if any_stalled else "band: min–max over seeds")
    save_png(fig, path)


def write(rows, results: str, out: str, speed: Optional[dict] = None, dead: Optional[list] = None) -> str:
    """The plots, then report.md, into ``out``; the path of report.md."""
    for name, grouped, size in sections(rows):
        plot(name, grouped, os.path.join(out, plot_name(name, size)), size)
    plot_dead(dead or [], os.path.join(out, "dead.png"))
    path = os.path.join(out, "report.md")
    text = report(rows, results, speed, dead)
    with atomic_path(path, ".md") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def full_runs(rows, recipe: str = "quick-b32") -> list:
    """(key, its rows by seed) of the full-data runs of ``recipe`` with its own init, by variant then backend."""
    return sorted(((k, seeds) for k, seeds in groups(rows).items()
                   if k[2] == recipe and k[3] is None and k[4] == "full"),
                  key=lambda item: (_rank(item[0][0], tuple(VARIANTS)), _rank(item[0][1], BACKENDS)))


def _rank(name: str, order) -> tuple:
    """Sort key: the names in ``order`` first, in that order, then the others by name."""
    return (order.index(name), "") if name in order else (len(order), name)


def compare_runs(picked) -> list:
    """``full_runs`` as ``nin compare``'s runs: the study is the exercises' comparison trained to the end, and
    ``nin_common.tools.compare.write`` turns it into that command's report and plots.  Parameters and shape tables
    come from each backend's model, as ``nin compare`` gives them."""
    # benchmarks/study.py trains with --device cpu; its first rows did not record the framework's name for it,
    # which its other rows of the same backend give
    named = {r["backend"]: r["device"] for _, seeds in picked for r in seeds if r.get("device")}
    runs = []
    for (variant, backend, *_), seeds in picked:
        params, macs, shapes = compare.describe_model(registry.load(backend), variant, seeds[0]["init"],
                                                    seeds[0]["image_size"])
        for r in seeds:
            loads = r.get("load_per_epoch") or [None] * len(r["curve"])
            run = compare.Run(variant, backend, params, macs, shapes, seed=r["seed"],
                            load_before=[r["load_before"][0]] if r.get("load_before") else [])
            run.rows = [dict(point, train_s=seconds, images_per_s=r["n_train"] / seconds, load_avg=load,
                             device=r.get("device") or named.get(backend, "cpu"), precision=r["precision"],
                             n_train=r["n_train"], n_val=r["n_val"])
                        for point, seconds, load in zip(r["curve"], r["epoch_s"], loads)]
            runs.append(run)
    return runs


def write_compare(rows, out: str, recipe: str = "quick-b32") -> str:
    """``nin compare``'s report.md, curves.png, resources.png and results.png in ``out``, from the study's full
    runs of ``recipe`` (``full_runs``); the path of report.md."""
    picked = full_runs(rows, recipe)
    if not picked:
        raise ValueError(f"expected full-data {recipe} runs with the recipe's init in the study's rows, got none")
    runs = compare_runs(picked)
    cpus: dict = {}
    for _, seeds in picked:
        for r in seeds:
            cpus[_cpu(r)] = cpus.get(_cpu(r), 0) + 1
    settings = dict(recipe=recipe, **recipes.resolve(recipe), limit_train="none (all)", limit_val="none (all)",
                    seeds=",".join(str(s) for s in sorted({r.seed for r in runs})), device="cpu",
                    precision="fp32")
    note = ("These are the exercise study's runs (`benchmarks/results/study.jsonl`, with the chapter's network's "
            "runs of the same recipe by `benchmarks/accuracy.py`), written as `nin compare` writes a comparison by "
            "`python -m benchmarks.study_report --compare docs/compare`. They were trained on "
            + ", ".join(f"{cpu} ({_count(n, 'run')})" for cpu, n in cpus.items())
            + ", most of them sharing the cores with other work: the seconds per epoch and images/s below compare "
              "nothing. Times measured on a quiet machine are in [the study's report](../study/report.md).")
    os.makedirs(out, exist_ok=True)
    return compare.write(runs, out, settings, note)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "study"))
    p.add_argument("--speed", default=SPEED, help="benchmarks/variant_speed.py's rows (quiet-machine times)")
    p.add_argument("--dead", default=DEAD, help="benchmarks/dead_channels.py's rows (dead channels)")
    p.add_argument("--accuracy", default=ACCURACY, help="benchmarks/accuracy.py's rows: its full runs of the "
                                                         "study's recipe in fp32 join the study as chapter runs")
    p.add_argument("--compare", metavar="DIR", help="also write nin compare's report and plots of the study's "
                                                     "full runs into DIR (docs/compare)")
    args = p.parse_args(argv)
    try:
        rows = accuracy_rows(args.accuracy) + read_rows(args.results)
        if args.compare:
            print(write_compare(rows, args.compare))
    except ValueError as err:
        print(f"study_report: {err}", file=sys.stderr)
        return 2
    print(write(rows, args.results, args.out, read_speed(args.speed), read_dead(args.dead)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
