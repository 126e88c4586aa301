"""A run folder's metrics: ``metrics.jsonl`` and ``curves.png``, and a run's memory figures from its rows.

Its checkpoints are ``nin_common.engine.checkpoint``'s.
"""
from __future__ import annotations

import os
from typing import List

from nin_common.util.files import atomic_path, dumps


def write_metrics(out: str, rows: List[dict], title: str) -> None:
    """``metrics.jsonl`` (one object per epoch) and ``curves.png``, both rewritten atomically."""
    from nin_common.engine.curves import plot_curves

    with atomic_path(os.path.join(out, "metrics.jsonl")) as tmp, open(tmp, "w") as f:
        for row in rows:
            f.write(dumps(row) + "\n")
    plot_curves(rows, os.path.join(out, "curves.png"), title)


def memory_figures(rows: List[dict]) -> dict:
    """A run's memory from its metrics rows: the process's and the training's peaks over the epochs (None where
    none was recorded), the resident memory when training started and the GPU's peak at the last epoch."""
    def peak(name):
        return max((r.get(name) or 0 for r in rows), default=0) or None

    return dict(peak_rss_mb=peak("peak_rss_mb"), rss_start_mb=rows[-1].get("rss_start_mb"),
                train_peak_rss_mb=peak("train_peak_rss_mb"), peak_device_mb=rows[-1].get("peak_device_mb"))
