"""Training curves as a PNG, like the chapter's figure (matplotlib's Agg canvas; no display needed)."""
from __future__ import annotations

from typing import Mapping, Sequence

from nin_common.util.files import atomic_path

CURVES = (("train_loss", "train loss", "-"), ("val_loss", "val loss", "--"),
          ("train_acc", "train acc", "-."), ("val_acc", "val acc", ":"))


def plot_curves(rows: Sequence[Mapping], path, title: str = "") -> None:
    """Draw loss and accuracy per epoch from the metrics rows and write ``path`` atomically."""
    fig = draw_curves(rows, title)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def png_bytes(rows: Sequence[Mapping], title: str = "") -> bytes:
    """The same figure as PNG bytes (what a notebook displays, see ``nin_common.tools.live``)."""
    import io

    buffer = io.BytesIO()
    draw_curves(rows, title).savefig(buffer, format="png")
    return buffer.getvalue()


def draw_curves(rows: Sequence[Mapping], title: str = ""):
    """The figure: loss and accuracy per epoch, integer epoch ticks, on an Agg canvas (pyplot untouched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(4.5, 3.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    epochs = [row["epoch"] for row in rows]
    for key, label, style in CURVES:
        ax.plot(epochs, [row[key] for row in rows], style, marker="o" if len(rows) < 12 else None,
                markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    last = max(epochs + [rows[-1].get("epochs", 0)])  # a run in progress: the axis spans all its epochs
    ax.set_xlim(0.5 if last < 2 else min(epochs), last + (0.5 if last < 2 else 0))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title, fontsize="small")
    fig.tight_layout()
    return fig
