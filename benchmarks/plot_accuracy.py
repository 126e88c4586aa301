"""The overlay of the backends' test-accuracy curves from ``benchmarks/results/accuracy.jsonl``, one PNG.

    python -m benchmarks.plot_accuracy                  # the quick recipe's rows -> results/accuracy_quick.png
    python -m benchmarks.plot_accuracy --label chapter

One colour per backend, one line style per precision (bf16 solid, fp32 dotted), one marker per seed; the last row
of each (backend, seed, precision) counts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from nin_common.engine import recipes

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "accuracy.jsonl")
PRECISION_STYLES = {"bf16": "-", "fp32": ":"}  # any other precision: dash-dot
MARKERS = ("o", "s", "^", "D")  # one per seed
# settings that rows written before they existed do not record, at the value those runs trained with (plain SGD)
UNRECORDED = dict(momentum=0.0, nesterov=False)


def latest_rows(path: str, label: str) -> dict:
    """{(backend, seed, precision): row} of the rows with ``label`` made with the recipe's present settings (a
    recipe changed since leaves its older rows out) trained in one process, the last one of each key."""
    current = recipes.RECIPES.get(label)
    found = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if row.get("label") == label and row.get("workers", 1) == 1 and (current is None or all(
                    row["settings"].get(k, UNRECORDED.get(k)) == v for k, v in current.items())):
                found[(row["backend"], row["settings"]["seed"], row["precision"])] = row
    return found


def plot(rows: dict, png: str, label: str, target: float = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.5))
    backends = sorted({k[0] for k in rows})
    seeds = sorted({k[1] for k in rows})
    colours = dict(zip(backends, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for (backend, seed, precision), row in sorted(rows.items()):
        epochs = range(1, len(row["val_acc"]) + 1)
        ax.plot(epochs, row["val_acc"], linestyle=PRECISION_STYLES.get(precision, "-."), linewidth=1.5,
                marker=MARKERS[seeds.index(seed) % len(MARKERS)], ms=3.5, color=colours[backend],
                label=f"{backend} {precision} seed {seed}: {row['val_acc'][-1]:.4f} in {row['seconds'] / 60:.1f} min")
    if target is not None:
        ax.axhline(target, color="grey", lw=0.8, ls=":")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"NiN on Fashion-MNIST, recipe '{label}', per backend and seed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", title_fontsize=8,
              title="line: bf16 solid, fp32 dotted; marker: " + ", ".join(
                  f"seed {s} {'●■▲◆'[i % 4]}" for i, s in enumerate(seeds)))
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", default="quick")
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--png", help="default: results/accuracy_<label>.png next to the results file")
    p.add_argument("--target", type=float, default=0.88, help="a dotted line at this accuracy")
    args = p.parse_args(argv)
    rows = latest_rows(args.results, args.label)
    if not rows:
        print(f"expected rows labelled {args.label!r} in {args.results}, got none", file=sys.stderr)
        return 2
    png = args.png or os.path.join(os.path.dirname(os.path.abspath(args.results)), f"accuracy_{args.label}.png")
    plot(rows, png, args.label, args.target)
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
