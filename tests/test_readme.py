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


def results_table():
    """The README's Results table: its header and its rows, as lists of cells."""
    with open(README, encoding="utf-8") as f:
        section = f.read().split("## Results", 1)[1].split("\n## ", 1)[0]
    lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
             if line.startswith("|")]
    return lines[0], lines[2:]


CLAIM = re.compile(r"(0\.\d{4}) in ([\d.]+) min \((bf16|fp32)\)$")


def test_readme_results_are_rows_of_the_accuracy_benchmark():
    """The README's Results table holds, per CPU kind, the recipe ``make train`` runs on a CPU, and each of its
    cells is a row of benchmarks/results/accuracy.jsonl: the backend, that recipe (full data), the final test
    accuracy, the minutes end to end, the precision, and a CPU of the kind the row names (with or without native
    bf16).  A cell that states no result says why ("not measured ..."); no cell holds a number of its own."""
    import json

    from nin_common.engine import recipes

    with open(RESULTS, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    header, table = results_table()
    assert header[1:] == list(COLUMNS), header
    claims = 0
    for cells in table:
        cpu, recipe = (part.strip() for part in cells[0].rsplit(",", 1))
        assert recipe == recipes.for_this_machine(gpu=False), cells[0]  # what make train runs on a CPU
        bf16_cpu = not cpu.startswith("AVX2 only")
        for column, cell in zip(header[1:], cells[1:]):
            m = CLAIM.match(cell)
            if not m:
                assert cell.startswith("not measured") and not re.search(r"\d\.\d", cell), cell
                continue
            acc, minutes, precision = float(m[1]), float(m[2]), m[3]
            matches = [r for r in rows if r["backend"] == COLUMNS[column] and r["label"] == recipe
                       and abs(r["final_val_acc"] - acc) < 5e-5
                       and round((r.get("end_to_end_s") or r["seconds"]) / 60, 1) == minutes
                       and r["precision"] == precision and r["machine"]["cpu_bf16"] == bf16_cpu]
            assert matches, f"README: {cells[0]}, {column}: {cell} is no row of {RESULTS}"
            claims += 1
    assert claims >= 4
