"""What a learner sees: nin evaluate's views, the messages of nin train, progress bars only where watched,
lines that fit an 80-column terminal."""
import io
import json
import os

import numpy as np
import pytest

from nin_common import cli
from nin_common.engine import data, registry, training
from nin_common.engine.trainer import Trainer
from nin_common.tools import views
from nin_common.util import progress
from conftest import assert_reads_at_80, run_piped

SIZE = 67
TRAIN = ["--image-size", str(SIZE), "--batch-size", "16", "--limit-train", "32", "--limit-val", "16",
         "--init", "kaiming", "--device", "cpu", "--no-progress"]


# --- views -----------------------------------------------------------------------------------------------------

def test_confusion_and_per_class_count_by_hand():
    labels, predicted = [0, 0, 1, 1, 1, 9], [0, 6, 1, 1, 0, 9]
    m = views.confusion(labels, predicted)
    assert m.shape == (10, 10) and m.sum() == 6
    assert (m[0, 0], m[0, 6], m[1, 1], m[1, 0], m[9, 9]) == (1, 1, 2, 1, 1)
    results = views.per_class(m)
    assert [r.name for r in results][:2] == ["t-shirt", "trouser"] and results[9].name == "ankle boot"
    assert (results[1].n, results[1].correct, results[1].acc) == (3, 2, 2 / 3)
    assert results[0].precision == 0.5  # two predicted t-shirt, one is
    assert views.most_confused(m)[0] in ("t-shirt taken for shirt (1 images)", "trouser taken for t-shirt (1 images)")
    with pytest.raises(ValueError, match="expected as many predictions as labels"):
        views.confusion([1, 2], [1])



@pytest.mark.parametrize("columns", [None, 80])
def test_evaluate_per_class_table_reads_whole_at_80_columns_piped(columns):
    code = ("from nin_common.cli.evaluate import print_per_class; from nin_common.tools import views; "
            "print_per_class(views.per_class(views.confusion(list(range(10)) * 1000, [9] * 10000)))")
    res = run_piped(["-c", code], columns=columns)
    assert res.returncode == 0, res.stderr
    names = [word for r in views.per_class(np.eye(10, dtype=int)) for word in r.name.split()]
    assert_reads_at_80(res.stdout, *names, "1000", "0.0000", "1.0000")


def test_evaluate_out_writes_views_that_agree_with_the_accuracy(backend, tmp_path, capsys, fashion_mnist):
    run = str(tmp_path / f"model{registry.info(backend.BACKEND).native_suffix}")
    backend.save_native(backend.NiN(seed=2, init="kaiming", image_size=SIZE), run)  # untrained: a few classes win
    out = tmp_path / "views"
    assert cli.main(["evaluate", "--checkpoint", run, "--limit", "40", "--device", "cpu", "--no-progress",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy per class" in printed and "ankle boot" in printed
    for png in (views.CONFUSION_PNG, views.EXAMPLES_PNG):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / views.RESULT_JSON).read_text())
    matrix = np.array(result["confusion"])
    assert matrix.sum() == result["n"] == 40
    assert np.trace(matrix) / 40 == result["acc"]  # the matrix is the same pass as the accuracy
    labels = data.load("test", None, 40, progress=False).labels
    assert (matrix.sum(axis=1) == np.bincount(labels, minlength=10)).all()
    assert cli.main(["evaluate", "--checkpoint", run, "--limit", "40", "--device", "cpu", "--no-progress",
                     "--json"]) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plain["acc"] == result["acc"] and abs(plain["loss"] - result["loss"]) < 1e-5


# --- nin train's messages ----------------------------------------------------------------------------------------

def interrupt_after(monkeypatch, epochs_done):
    """Make ``fit`` stop with Ctrl-C after ``epochs_done`` completed epochs."""
    real = Trainer.train_epoch
    calls = []

    def train_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) > epochs_done:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)


def test_ctrl_c_in_the_first_epoch_says_there_is_nothing_to_resume(tmp_path, capsys, monkeypatch, fashion_mnist):
    run = str(tmp_path / "run")
    interrupt_after(monkeypatch, 0)
    assert cli.main(["train", "--backend", registry.BACKENDS[0], "--epochs", "2", "--out", run, *TRAIN]) == 130
    err = capsys.readouterr().err
    assert "no epoch had completed" in err and "--resume" not in err
    monkeypatch.undo()  # "run the same command again" works: nothing half-written is in the way
    assert cli.main(["train", "--backend", registry.BACKENDS[0], "--epochs", "1", "--out", run, *TRAIN]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert f"the run is in {run}" in last and f"nin evaluate --checkpoint {run}" in last


def test_ctrl_c_after_an_epoch_gives_a_resume_command_that_works(tmp_path, capsys, monkeypatch, fashion_mnist):
    run = str(tmp_path / "run")
    interrupt_after(monkeypatch, 1)
    assert cli.main(["train", "--backend", registry.BACKENDS[0], "--epochs", "2", "--out", run, *TRAIN]) == 130
    err = capsys.readouterr().err
    command = err.split("continue with: nin ")[1].split()
    assert "epoch 1 is saved" in err and command == ["train", "--resume", run]
    monkeypatch.undo()
    assert cli.main(command + ["--no-progress"]) == 0
    assert [json.loads(line)["epoch"] for line in open(os.path.join(run, "metrics.jsonl"))] == [1, 2]


# --- progress bars and line widths ----------------------------------------------------------------------------------

class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bars_only_on_a_terminal(monkeypatch, tty):
    stream = Stream(tty)
    monkeypatch.setattr("sys.stderr", stream)
    with progress.bar(True, total=3, desc="x", mininterval=0) as bar:
        bar.update(3)
    assert ("\r" in stream.getvalue()) == tty
    assert not progress.shown(False)


def test_epoch_line_fits_80_columns():
    row = dict(epoch=100, epochs=100, train_loss=2.30261, val_loss=2.30259, train_acc=0.10001, val_acc=0.1,
               images_per_s=123456.7, elapsed_s=3 * 3600 + 61)
    line = training.epoch_line(row)
    assert len(line) <= 80 and "loss 2.3026/2.3026" in line and "3:01:01" in line


def test_on_epoch_gets_every_row_and_the_animator_collects_them(fashion_mnist):
    from nin_common.tools.live import Animator

    animator = Animator("t", show=False)
    fit = registry.part(registry.BACKENDS[0], "training").fit
    rows = fit(epochs=2, image_size=SIZE, batch_size=16, limit_train=16, limit_val=16, init="kaiming", device="cpu",
               progress=False, on_epoch=animator)
    assert animator.rows == rows and [r["epoch"] for r in rows] == [1, 2]
