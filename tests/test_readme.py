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


RESULTS = os.path.join(REPO, "benchmarks", "results", "accuracy.jsonl")
COLUMNS = {"PyTorch": "torch", "TensorFlow": "tf", "MXNet": "mxnet", "JAX": "jax"}


def results_claims():
    """(CPU and recipe, backend, accuracy, amount, unit, precision or None) of each 'ACC in T min|h' cell of the
    README's Results table."""
    with open(README, encoding="utf-8") as f:
        section = f.read().split("## Results", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    claims = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for column, cell in zip(header[1:], cells[1:]):
            m = re.match(r"(0\.\d{4}) in ([\d.]+) (min|h)(?: \((bf16|fp32)\))?$", cell)
            if m:
                claims.append((cells[0], COLUMNS[column], float(m[1]), float(m[2]), m[3], m[4]))
    return claims


def test_readme_results_are_rows_of_the_accuracy_benchmark():
    """Every accuracy and time the README's Results table states is a row of benchmarks/results/accuracy.jsonl:
    the backend, the recipe, the final test accuracy, the minutes (or hours) end to end, the precision where the
    cell names it, and a CPU of the kind the row names (with or without native bf16)."""
    import json

    with open(RESULTS, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    claims = results_claims()
    assert len(claims) >= 12
    for cpu_and_recipe, backend, acc, amount, unit, precision in claims:
        recipe = re.sub(r"\(.*?\)", "", cpu_and_recipe.rsplit(",", 1)[1]).strip()
        bf16_cpu = not cpu_and_recipe.startswith("AVX2 only")
        seconds = 60 if unit == "min" else 3600
        matches = [r for r in rows if r["backend"] == backend and r["label"] == recipe
                   and abs(r["final_val_acc"] - acc) < 5e-5 and round(r["seconds"] / seconds, 1) == amount
                   and precision in (None, r["precision"]) and r["machine"]["cpu_bf16"] == bf16_cpu]
        assert matches, f"README: {cpu_and_recipe}, {backend}: {acc} in {amount} {unit} is no row of {RESULTS}"
