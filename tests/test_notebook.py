"""The notebook runs: notebooks/nin.ipynb executed top to bottom at tiny sizes (NIN_NOTEBOOK_SIZE=tiny) with
nbclient, so that it cannot rot."""
import os

from nin_common.engine import registry
from conftest import load_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "nin.ipynb")


def outputs(nb, kind):
    """Every output of the executed notebook holding ``kind`` ('text/plain', 'image/png', 'text/markdown'...)."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "stream" and out.get("output_type") == "stream":
                found.append(out["text"])
            elif kind in out.get("data", {}):
                found.append(out["data"][kind])
    return found


def test_notebook_runs_at_tiny_size(monkeypatch):
    import nbformat  # the test extra: pip install 'nin[test]'
    from nbclient import NotebookClient

    for name in registry.BACKENDS:  # every framework is expected (or skipped/failed as the suite says)
        load_backend(name)
    monkeypatch.setenv("NIN_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    if os.environ.get("NIN_NOTEBOOK_KEEP"):  # to look at the executed notebook
        nbformat.write(nb, os.environ["NIN_NOTEBOOK_KEEP"])
    text = "\n".join(outputs(nb, "stream") + outputs(nb, "text/markdown"))
    assert "bit-identical weights in every framework: True" in text
    for name in registry.BACKENDS:
        assert f"| {registry.framework(name)} |" in text  # in the logits and comparison tables
    assert "| ONNX Runtime |" in text and "ankle boot" in text
    assert "2 workers x 8 images against 1 process x 16, float64" in text and "| 2 | 2 |" in text
    # live curves: one picture per framework, redrawn in place (display_id), plus the two evaluation views
    assert len(outputs(nb, "image/png")) == len(registry.BACKENDS) + 2
