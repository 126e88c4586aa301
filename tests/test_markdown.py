"""Every Markdown table the project writes (the compare report, the evaluation report) or commits (README, docs/)
renders as a table, with as many cells in each row as in its header: parsed by markdown-it-py's GFM tables."""
import glob
import os
import re

import numpy as np
import pytest
from markdown_it import MarkdownIt

from nin_common.tools import compare, views

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cells(line: str) -> int:
    """The cells of a table row: pipes that are not escaped separate them (GFM)."""
    return len(re.split(r"(?<!\\)\|", line.strip().strip("|")))


def table_problems(text: str) -> list:
    """Every block of lines starting with '|' that is not rendered as one table, or has a row whose cell count
    differs from its header's (markdown-it drops extra cells and pads missing ones, so it is counted here)."""
    md = MarkdownIt("commonmark").enable("table")
    starts = {t.map[0] for t in md.parse(text) if t.type == "table_open"}
    lines, problems, in_fence, i = text.splitlines(), [], False, 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            in_fence = not in_fence
        if in_fence or not lines[i].lstrip().startswith("|"):
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].lstrip().startswith("|"):
            j += 1
        if i not in starts:
            problems.append(f"line {i + 1}: not rendered as a table: {lines[i][:80]}")
        header = cells(lines[i])
        problems += [f"line {k + 1}: {cells(lines[k])} cells under a header of {header}"
                     for k in range(i, j) if cells(lines[k]) != header]
        i = j
    return problems


def test_the_checker_finds_a_broken_table():
    broken = "| # | torch layer | torch output |\n|---|---|\n| 0 | Conv | (1, 2) |\n"
    assert table_problems(broken)[0].startswith("line 1: not rendered")
    ragged = "| a | b |\n|---|---|\n| 1 | 2 | 3 |\n"
    assert table_problems(ragged) == ["line 3: 3 cells under a header of 2"]
    assert table_problems("| a \\| b | c |\n|---|---|\n| 1 | 2 |\n") == []


def fake_runs():
    rows = [dict(epoch=e, train_loss=2.0, val_loss=2.0, val_acc=0.5, train_acc=0.5, images_per_s=10.0, train_s=1.0,
                 device="cpu (CPU)", precision="fp32", n_train=64, n_val=32) for e in (1, 2)]
    return [compare.Run(v, b, 100, 1000, [("Seq|uential", shape), ("MaxPool2d", shape)], rows)
            for v in ("chapter", "1x1-0") for b, shape in (("torch", (1, 96, 15, 15)), ("tf", (1, 15, 15, 96)))]


def test_compare_report_tables(tmp_path):
    path = compare.write(fake_runs(), str(tmp_path), dict(epochs=2, image_size=67, precision="auto"))
    text = open(path).read()
    assert table_problems(text) == []
    assert len(re.findall(r"^\|---", text, re.M)) == 4  # results, per-epoch, two shape tables
    assert "precision=auto" in text and "precision fp32" in text  # what was asked, and what was used
    for png in ("curves.png", "resources.png", "results.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluation_report_table():
    labels = np.arange(20) % 10
    matrix = views.confusion(labels, (labels + (labels > 7)) % 10)
    text = views.markdown(views.per_class(matrix), matrix, "t")
    assert table_problems(text) == [] and text.count("\n| ") == 12  # header, 10 classes, all


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "*.md")) +
                                        glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True) +
                                        glob.glob(os.path.join(ROOT, "benchmarks", "**", "*.md"), recursive=True)),
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_committed_markdown_tables(path):
    assert table_problems(open(path).read()) == []


def test_the_repository_speaks_to_its_users_not_of_its_issues():
    """No issue numbers in code, tests, docs, notebooks or benchmark rows: the repository is read by its users."""
    pattern = re.compile(r"\bissues? #?\d+", re.IGNORECASE)
    found = []
    for folder in ("common", "nin_torch", "nin_mxnet", "nin_tf", "nin_jax", "tests", "docs", "benchmarks",
                   "notebooks", ""):
        names = (glob.glob(os.path.join(ROOT, folder, "**", "*"), recursive=True) if folder else
                 glob.glob(os.path.join(ROOT, "*")))
        for path in names:
            if not os.path.isfile(path) or not path.endswith((".py", ".md", ".ipynb", ".jsonl", ".txt", ".toml",
                                                               "Makefile")):
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                found += [f"{os.path.relpath(path, ROOT)}: {m.group(0)}" for m in pattern.finditer(f.read())]
    assert not found, found


MARKDOWN = sorted(glob.glob(os.path.join(ROOT, "*.md")) + glob.glob(os.path.join(ROOT, "docs", "*.md")) +
                  glob.glob(os.path.join(ROOT, "benchmarks", "*.md")))


def test_the_files_the_docs_name_exist():
    """A path the README or a document names in code spans (`common/arch/variants.py`) is in the repository, and
    so is the target of every relative link."""
    code = re.compile(r"`((?:common|nin_torch|nin_mxnet|nin_tf|nin_jax|benchmarks|tests|docs|notebooks|\.ci)/"
                      r"[\w./-]+\.(?:py|md|json|jsonl|ipynb|sh|png|npz))`")
    link = re.compile(r"\]\((?!https?:|#|mailto:)([^)#\s]+)(?:#[^)]*)?\)")
    missing = []
    for path in MARKDOWN:
        text = open(path, encoding="utf-8").read()
        here = os.path.dirname(path)
        missing += [f"{os.path.relpath(path, ROOT)}: {name}" for name in code.findall(text)
                    if not os.path.exists(os.path.join(ROOT, name))]
        missing += [f"{os.path.relpath(path, ROOT)}: {target}" for target in link.findall(text)
                    if not os.path.exists(os.path.normpath(os.path.join(here, target)))]
    assert not missing, missing
