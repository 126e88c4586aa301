"""Training curves that redraw in place in a notebook after every epoch, as d2l's ``Animator`` does.

``Animator`` is the ``on_epoch`` callback of ``fit``: each call appends the epoch's metrics row and replaces the
picture shown under the cell (one IPython display, updated through its display id) with the curves so far,
drawn by ``nin_common.engine.curves`` (the figure ``curves.png`` holds).  It renders PNG bytes on an Agg canvas
itself, so it neither needs nor changes pyplot's backend; outside a notebook it only collects the rows.

    animator = Animator("PyTorch, 67x67")
    nin_torch.fit(epochs=5, image_size=67, on_epoch=animator)
"""
from __future__ import annotations

from typing import Dict, List, Optional

from nin_common.engine.curves import png_bytes
from nin_common.util.progress import in_notebook


class Animator:
    def __init__(self, title: str = "", show: Optional[bool] = None):
        self.title = title
        self.rows: List[Dict] = []
        self.show = in_notebook() if show is None else show
        self._handle = None

    def __call__(self, row: Dict) -> None:
        self.rows.append(dict(row))
        if self.show:
            self.draw()

    def draw(self) -> None:
        """Show the curves so far: the first call displays them, later calls replace that picture."""
        from IPython.display import Image, display

        image = Image(data=png_bytes(self.rows, self.title), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)


def show(fig) -> None:
    """Display a matplotlib Figure (Agg canvas) in a notebook as a PNG, whatever pyplot's backend is."""
    import io

    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    display(Image(data=buffer.getvalue(), format="png"))
