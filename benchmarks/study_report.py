"""The exercise study's rows as tables and plots: per exercise, each variant's final test accuracy over seeds
(mean, min-max), train/test gap and time per epoch, and one plot of test accuracy per epoch with a band over
seeds per variant.

Not a test.  Reads ``benchmarks/results/study.jsonl`` (written by ``benchmarks/study.py``); prints the Markdown
tables and writes ``docs/compare/study-<exercise>.png``.

    python benchmarks/study_report.py
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from common.arch.costs import resources  # noqa: E402
from common.arch.variants import build_spec  # noqa: E402
from common.util.markdown import table  # noqa: E402

RESULTS = os.path.join(HERE, "results", "study.jsonl")
EXERCISES = {
    "1x1": ("1. How many 1×1 convolutions per block", ("chapter", "1x1-0", "1x1-1", "1x1-3")),
    "3x3": ("2. 3×3 instead of 1×1", ("chapter", "3x3")),
    "fc-head": ("3. A fully connected head instead of global average pooling", ("chapter", "fc-head", "fc-head-wide")),
    "gradual": ("5. 384×5×5 to 10×5×5 in one step or gradually", ("chapter", "gradual")),
    "vgg": ("6. A deeper NiN in the spirit of VGG-11", ("chapter", "nin-vgg11")),
}


def read(path: str):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def groups(rows):
    out = defaultdict(list)
    for r in rows:
        out[(r["variant"], r["backend"], r.get("init_override"))].append(r)
    return out


def summary_table(exercise: str, grouped) -> str:
    title, variants = EXERCISES[exercise]
    body = []
    for (variant, backend, init), runs in sorted(grouped.items()):
        if variant not in variants:
            continue
        accs = [r["val_acc"] for r in runs]
        gaps = [r["train_acc"] - r["val_acc"] for r in runs]
        epoch_s = [s for r in runs for s in r["epoch_s"]]
        size = runs[0]["image_size"]
        res = resources(build_spec(variant), size, 1).totals
        body.append([variant + (f" ({init})" if init else ""), backend, str(len(runs)),
                     f"{statistics.mean(accs):.4f}", f"{min(accs):.4f}–{max(accs):.4f}",
                     f"{statistics.mean(gaps):+.4f}", f"{statistics.median(epoch_s):.0f}",
                     f"{res['params']:,}", f"{res['macs'] / 1e6:.1f} M"])
    return f"**{title}**\n\n" + table(["variant", "backend", "seeds", "test acc (mean)", "min–max",
                                          "train − test", "s per epoch (median)", "parameters", "MACs per image"],
                                         body)


def plot(exercise: str, grouped, out: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    title, variants = EXERCISES[exercise]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for (variant, backend, init), runs in sorted(grouped.items()):
        if variant not in variants:
            continue
        curves = np.array([[c["val_acc"] for c in r["curve"]] for r in runs])
        epochs = np.arange(1, curves.shape[1] + 1)
        label = f"{variant}{f' ({init})' if init else ''} / {backend} ({len(runs)} seed{'s' * (len(runs) > 1)})"
        line, = ax.plot(epochs, curves.mean(axis=0), label=label)
        ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.set(xlabel="epoch", ylabel="test accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = os.path.join(out, f"study-{exercise}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "compare"))
    args = p.parse_args()
    grouped = groups(read(args.results))
    os.makedirs(args.out, exist_ok=True)
    for exercise in EXERCISES:
        print(summary_table(exercise, grouped))
        print(f"plot: {plot(exercise, grouped, args.out)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
