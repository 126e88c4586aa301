"""``nin compare`` end to end on a tiny subset: every registered backend; several seeds, resuming, the load check
(PyTorch)."""
import json
import re
import statistics
import subprocess
import sys

import pytest

from nin_common import cli
from nin_common.tools import compare as comparison
from conftest import load_backend

TINY = ["--limit-train", "32", "--limit-val", "16", "--image-size", "67", "--batch-size", "16", "--no-progress"]


def test_compare_writes_report_and_plots(all_backends, fashion_mnist, tmp_path):
    out = tmp_path / "cmp"
    backends = [b.BACKEND for b in all_backends]  # what "all" means here: every installed backend
    res = subprocess.run([sys.executable, "-m", "nin_common.cli", "compare", "--backend", "all",
                          "--variants", "chapter,1x1-0", "--epochs", "1", "--limit-train", "32", "--limit-val", "16",
                          "--image-size", "67", "--batch-size", "16", "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    report = (out / "report.md").read_text()
    # every setting it used is stated: the recipe's (the default, quick) and the ones given
    for setting in ("recipe=quick", "init=kaiming-alive", "schedule=cosine", "warmup=0.5", "epochs=1",
                    "batch_size=16", "precision=auto"):
        assert setting in report
    for png in ("curves.png", "resources.png", "results.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = "|".join(backends)
    rows = re.findall(rf"^\| (chapter|1x1-0) \| ({names}) \| 0 \| ([\d,]+) \| ([\d,]+) \|", report, re.M)
    assert len(rows) == 2 * len(backends)
    params = {(v, b): int(p.replace(",", "")) for v, b, p, _ in rows}
    assert {params[("chapter", b)] for b in backends} == {1_992_166}
    assert all(params[("1x1-0", b)] < params[("chapter", b)] for b in backends)
    # shape tables side by side: NCHW for torch/mxnet, NHWC for tf and jax
    assert "(1, 96, 15, 15)" in report and "(1, 15, 15, 96)" in report
    for v in ("chapter", "1x1-0"):
        for b in backends:
            assert (out / "runs" / f"{v}-{b}" / "metrics.jsonl").exists()


def test_compare_rejects_unknown_variant_before_training(tmp_path):
    res = subprocess.run([sys.executable, "-m", "nin_common.cli", "compare", "--variants", "chapter,vgg", "--out",
                          str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "expected variant to be one of" in res.stderr and "'vgg'" in res.stderr
    assert not (tmp_path / "x").exists()


def compare(*argv):
    return cli.main(["compare", "--backend", "torch", "--variants", "chapter,1x1-0", *TINY, *argv])


def metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def quiet(monkeypatch):
    """The 1-minute load average is 0.25 (the other figures are not read)."""
    monkeypatch.setattr(comparison, "load_average", lambda: [0.25, 0.5, 0.75])


def test_compare_over_seeds_resumes_and_refuses_other_settings(fashion_mnist, tmp_path, quiet, capsys):
    load_backend("torch")
    out = tmp_path / "cmp"
    assert compare("--seeds", "0,1", "--epochs", "1", "--out", str(out)) == 0
    folders = {(v, s): out / "runs" / f"{v}-torch-s{s}" for v in ("chapter", "1x1-0") for s in (0, 1)}
    first = {key: metrics(folder) for key, folder in folders.items()}
    report = (out / "report.md").read_text()
    assert "seeds=0,1" in report and "## Over seeds" in report
    for v in ("chapter", "1x1-0"):
        accs = [first[(v, s)][-1]["val_acc"] for s in (0, 1)]
        gaps = [first[(v, s)][-1]["train_acc"] - first[(v, s)][-1]["val_acc"] for s in (0, 1)]
        row = re.search(rf"^\| {v} \| torch \| 0,1 \| ([\d.]+) \| ([\d.–]+) \| ([-+\d.]+) \| [\d.]+ \| 0\.2 \|$",
                        report, re.M)
        assert row, report
        assert row[1] == f"{statistics.mean(accs):.4f}"
        low, high = f"{min(accs):.4f}", f"{max(accs):.4f}"
        assert row[2] == (low if low == high else f"{low}–{high}")
        assert row[3] == f"{statistics.mean(gaps):+.4f}"
    for png in ("curves.png", "results.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # run again: every run finished, nothing trains, the same report
    capsys.readouterr()
    states = {key: (folder / "checkpoint" / "state.json").stat().st_mtime_ns for key, folder in folders.items()}
    assert compare("--seeds", "0,1", "--epochs", "1", "--out", str(out)) == 0
    assert capsys.readouterr().out.count("not trained again") == 4
    assert {key: (f / "checkpoint" / "state.json").stat().st_mtime_ns for key, f in folders.items()} == states
    assert (out / "report.md").read_text() == report

    # other settings in the same folders: one line, exit 2, nothing trained
    assert compare("--seeds", "0,1", "--epochs", "1", "--lr", "0.1", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected" in err and "lr=0.05 (the command has 0.1)" in err

    # more epochs: each run continues from its checkpoint at epoch 1
    assert compare("--seeds", "0,1", "--epochs", "2", "--out", str(out)) == 0
    assert capsys.readouterr().out.count("continuing from epoch 1") == 4
    for key, folder in folders.items():
        rows = metrics(folder)
        assert [r["epoch"] for r in rows] == [1, 2] and rows[0] == first[key][0]
    assert json.loads((folders[("chapter", 0)] / comparison.LOADS_FILE).read_text()) == {"load_before": [0.25, 0.25]}
    # ... and never to fewer
    assert compare("--seeds", "0,1", "--epochs", "1", "--out", str(out)) == 2
    assert "never to fewer" in capsys.readouterr().err


def test_compare_single_seed_keeps_its_folder_and_records_the_load(fashion_mnist, tmp_path, quiet):
    load_backend("torch")
    out = tmp_path / "cmp"
    assert cli.main(["compare", "--backend", "torch", "--variants", "chapter", "--seed", "3", "--epochs", "1",
                     "--require-quiet", "1", *TINY, "--out", str(out)]) == 0
    assert metrics(out / "runs" / "chapter-torch")[-1]["seed"] == 3
    report = (out / "report.md").read_text()
    assert "seed=3" in report and "## Over seeds" not in report
    assert re.search(r"^\| chapter \| torch \| 3 \| [\d,]+ \| [\d,]+ \| [\d.]+ \| 0\.2 \|", report, re.M)


def test_compare_refuses_seed_and_seeds_together(tmp_path, capsys):
    assert compare("--seed", "1", "--seeds", "0,1", "--out", str(tmp_path / "x")) == 2
    assert capsys.readouterr().err == ("nin compare: error: expected --seed or --seeds, got both (--seed 1 and "
                                       "--seeds 0,1)\n")
    assert compare("--seeds", "0,0", "--out", str(tmp_path / "x")) == 2
    assert "expected distinct seeds, got '0,0'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


class Clock:
    """time.monotonic and time.sleep for comparison.wait_quiet: sleeping moves the clock on, and the load with it."""

    def __init__(self, loads):
        self.now, self.loads, self.slept = 0.0, list(loads), []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.slept.append(seconds)


def fake_load(monkeypatch, loads):
    clock = Clock(loads)
    monkeypatch.setattr(comparison, "time", clock)
    monkeypatch.setattr(comparison, "load_average", lambda: [clock.loads.pop(0) if len(clock.loads) > 1 else
                                                        clock.loads[0], 1.0, 1.0])
    return clock


def test_wait_quiet_waits_for_the_load_to_fall(monkeypatch, capsys):
    clock = fake_load(monkeypatch, [3.0, 2.5, 0.8])
    assert comparison.wait_quiet(1.0, 60, "chapter / torch / seed 0") == 0.8
    assert clock.slept == [comparison.QUIET_POLL_S] * 2
    assert "load is 3.00, above --require-quiet 1; waiting up to 60 s" in capsys.readouterr().out
    fake_load(monkeypatch, [3.0])
    assert comparison.wait_quiet(None, 60, "x") == 3.0  # recorded, not checked


def test_wait_quiet_refuses_a_busy_machine(monkeypatch):
    clock = fake_load(monkeypatch, [3.0])
    with pytest.raises(ValueError, match=r"expected a 1-minute load average of at most 1 before chapter / torch / "
                                         r"seed 0, got 3\.00 after waiting 40 s"):
        comparison.wait_quiet(1.0, 40, "chapter / torch / seed 0")
    assert clock.now == 40


def test_compare_refuses_a_busy_machine_before_training(monkeypatch, tmp_path, capsys):
    load_backend("torch")
    fake_load(monkeypatch, [5.0])
    assert compare("--epochs", "1", "--require-quiet", "2", "--quiet-wait", "0", "--out", str(tmp_path / "x")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most 2 before chapter / torch / seed 0, got 5.00" in err
    assert not (tmp_path / "x" / "runs").exists()


class Interrupted(Exception):
    pass


def test_compare_continues_an_interrupted_run(fashion_mnist, tmp_path, quiet, capsys):
    torch = load_backend("torch")
    out = tmp_path / "cmp"

    def stop(row):
        raise Interrupted(row["epoch"])

    with pytest.raises(Interrupted):  # stopped after epoch 1 of 2, its checkpoint written
        torch.fit(recipe="quick", variant="chapter", epochs=2, limit_train=32, limit_val=16, image_size=67,
                  batch_size=16, seed=0, out=str(out / "runs" / "chapter-torch"), progress=False, on_epoch=stop)
    before = metrics(out / "runs" / "chapter-torch")
    assert [r["epoch"] for r in before] == [1]
    assert cli.main(["compare", "--backend", "torch", "--variants", "chapter", "--epochs", "2", *TINY,
                     "--out", str(out)]) == 0
    assert "continuing from epoch 1" in capsys.readouterr().out
    rows = metrics(out / "runs" / "chapter-torch")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0] == before[0]
