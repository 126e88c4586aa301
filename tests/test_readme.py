"""The README's Python examples run as written (each in a fresh process, in a scratch folder), and what they
print or return is what the README says."""
import os
import re

from conftest import REPO, run_python

README = os.path.join(REPO, "README.md")


def python_blocks():
    with open(README, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_readme_has_its_examples():
    blocks = python_blocks()
    assert len(blocks) == 3
    assert "NiN(weights=\"quick\")" in blocks[1] and "fit(" in blocks[2]


def test_readme_python_examples_run(tmp_path):
    for i, block in enumerate(python_blocks()):
        code = f"import os\nos.chdir({str(tmp_path)!r})\n" + block
        if "pretrained.metadata" in block:
            code += "\nprint('accuracy', pretrained.metadata('quick')['test_accuracy'], model.image_size)\n"
        if "fit(" in block:
            code += "\nprint('epochs', len(rows), rows[-1]['n_train'])\n"
        proc = run_python(code, timeout=600)
        assert proc.returncode == 0, f"README block {i}: {proc.stderr[-2000:]}"
        if i == 0:
            assert "output shape:" in proc.stdout and "torch.Size([1, 10])" in proc.stdout
        if "pretrained.metadata" in block:
            stated = re.search(r"accuracy (\d\.\d+) 67", proc.stdout).group(1)
            with open(README, encoding="utf-8") as f:
                assert f"{float(stated):.4f} test accuracy" in f.read()  # the README states the shipped figure
        if "fit(" in block:
            assert "epochs 1 512" in proc.stdout
            assert os.path.exists(tmp_path / "runs" / "torch-small" / "metrics.jsonl")
