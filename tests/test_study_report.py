"""benchmarks/study_report.py on synthetic study rows: the tables' figures over seeds, the variants not run yet,
the plots, and a bad results file refused with one line and nothing written.  No training."""
import json
import os
import statistics
import subprocess
import sys

import pytest

from test_markdown import table_problems
from conftest import require_installed
from nin_common.arch.costs import resources
from nin_common.arch.variants import build_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = "benchmarks.study_report"  # run as python -m from the repository root
PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("ex1.png", "ex2.png", "ex3.png", "ex5.png", "ex6.png")


def row(variant, backend, seed, val_acc, train_acc, epoch_s, cpu="Test CPU", commit="abc1234"):
    curve = [dict(epoch=e + 1, train_loss=1.0 / (e + 1), train_acc=train_acc - 0.1 * (2 - e), val_loss=0.5,
                  val_acc=val_acc - 0.05 * (2 - e)) for e in range(3)]
    return dict(variant=variant, backend=backend, seed=seed, recipe="quick-b32", init_override=None,
                limit_train=None, label="full", init="kaiming-alive", precision="fp32", image_size=67, batch_size=32,
                epochs=3, n_train=60000, n_val=10000, val_acc=val_acc, val_loss=0.3, train_acc=train_acc,
                train_loss=0.2, epoch_s=epoch_s, curve=curve, nice=19, load_before=[1.0, 1.0, 1.0],
                load_after=[2.0, 2.0, 2.0], load_per_epoch=[[1.5 + seed, 1.0, 1.0]] * 3, folder="runs/x",
                date="2024-01-01T00:00:00", commit=commit, machine=dict(cpu=cpu, cpu_count=2), cpu_flags=["avx2"])


ROWS = [row("chapter", "torch", 0, 0.9012, 0.9300, [100.0, 110.0, 120.0]),
        row("chapter", "torch", 1, 0.8950, 0.9100, [90.0, 95.0, 100.0]),
        row("chapter", "torch", 2, 0.9101, 0.8900, [105.0, 100.0, 95.0]),
        row("1x1-0", "torch", 0, 0.8700, 0.8600, [80.0, 81.0, 82.0]),
        row("1x1-0", "torch", 1, 0.8810, 0.8650, [70.0, 71.0, 72.0]),
        dict(row("chapter", "mxnet", 0, 0.8999, 0.9050, [200.0, 210.0, 220.0], commit="def5678"), peak_rss_mb=812.4),
        dict(row("nin-vgg11", "torch", 0, 0.8500, 0.8800, [900.0] * 3), label="reduced", limit_train=12000,
             n_train=12000)]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(*args):
    """The script on the given files only: without ``--accuracy``, on no accuracy rows (not the repository's)."""
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    extra = () if "--accuracy" in args else ("--accuracy", os.devnull)
    return subprocess.run([sys.executable, "-m", SCRIPT, *args, *extra], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=path))


# one quiet-machine time (benchmarks/variant_speed.py's row), for chapter in torch only
QUIET = dict(variant="chapter", backend="torch", recipe="quick-b32", epoch_s_60000=123.44, load_before=[0.4, 0.5, 0.6],
             load_after=[1.2, 0.7, 0.6], machine=dict(cpu="Quiet CPU", cpu_count=2), commit="def5678",
             cpu_flags=["avx2"], precision="fp32", batch_size=32, image_size=67, images=3200, threads=2,
             images_per_s=486.06, macs_per_image=53940520, achieved_gflops=157.31, nominal_fp32_peak_gflops=156.5,
             fraction_of_fp32_peak=1.005, train_memory_analytic_mb=30.5, rss_start_mb=362.5, train_peak_rss_mb=431.9,
             peak_rss_mb=431.9)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    results = write_rows(tmp / "study.jsonl", ROWS)
    speed = write_rows(tmp / "speed.jsonl", [QUIET])
    out = tmp / "out"
    proc = run("--results", str(results), "--out", str(out), "--speed", str(speed))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "report.md")
    return out, (out / "report.md").read_text()


def section(text, number):
    return text.split(f"## Exercise {number}:")[1].split("\n## ")[0]


def line_of(text, variant, backend):
    found = [line for line in text.splitlines() if line.startswith(f"| {variant} | {backend} |")]
    assert len(found) == 1, found
    return [c.strip() for c in found[0].strip("|").split("|")]


def test_the_table_gives_the_mean_and_range_over_seeds(written):
    _, text = written
    ex1 = section(text, 1)
    for variant, backend in (("chapter", "torch"), ("1x1-0", "torch"), ("chapter", "mxnet")):
        runs = [r for r in ROWS if r["variant"] == variant and r["backend"] == backend]
        accs = [r["val_acc"] for r in runs]
        cells = line_of(ex1, variant, backend)
        assert cells[4] == ",".join(str(r["seed"]) for r in runs)
        assert cells[5] == f"{statistics.mean(accs):.4f}"
        low, high = f"{min(accs):.4f}", f"{max(accs):.4f}"
        assert cells[6] == (low if low == high else f"{low}–{high}")
        assert cells[7] == f"{statistics.mean(r['train_acc'] - r['val_acc'] for r in runs):+.4f}"
        assert cells[10] == ("812 MiB" if backend == "mxnet" else "?")  # the peak where the rows recorded one
        assert cells[11:13] == ["fp32", "full"]
        assert cells[13] == ("123.4" if (variant, backend) == ("chapter", "torch") else "—")
    assert "Quiet times" in ex1 and "Quiet CPU (AVX2), 1-minute load 0.4–1.2, commit def5678" in ex1


def test_grouping_by_seed(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    from benchmarks import study_report

    again = dict(ROWS[0], val_acc=0.5)  # seed 0 made again: its last row counts
    grouped = study_report.groups(ROWS + [again])
    assert sorted(grouped) == sorted({("chapter", "torch", "quick-b32", None, "full"),
                                      ("1x1-0", "torch", "quick-b32", None, "full"),
                                      ("chapter", "mxnet", "quick-b32", None, "full"),
                                      ("nin-vgg11", "torch", "quick-b32", None, "reduced")})
    s = study_report.over_seeds(grouped[("chapter", "torch", "quick-b32", None, "full")])
    assert s["seeds"] == [0, 1, 2] and s["min"] == 0.5 and s["max"] == 0.9101
    assert s["mean"] == pytest.approx((0.5 + 0.8950 + 0.9101) / 3)


def test_the_gap_is_signed(written):
    _, text = written
    chapter, narrow = line_of(section(text, 1), "chapter", "torch"), line_of(section(text, 1), "1x1-0", "torch")
    assert chapter[7].startswith("+")  # trained above the test accuracy on average
    assert narrow[7].startswith("-")  # 1x1-0's test accuracy is above its training accuracy (dropout on)


def test_costs_are_analytic_at_the_rows_image_size(written):
    from nin_common.arch.costs import resources
    from nin_common.arch.variants import build_spec

    _, text = written
    cells = line_of(section(text, 1), "1x1-0", "torch")
    totals = resources(build_spec("1x1-0"), 67, 1).totals
    assert cells[8:10] == [f"{totals['params']:,}", f"{totals['macs']:,}"]


def test_variants_without_rows_are_not_run_yet(written):
    _, text = written
    for number, variant in ((1, "1x1-1"), (1, "1x1-3"), (2, "3x3"), (3, "fc-head"), (5, "gradual")):
        assert "not run yet" in line_of(section(text, number), variant, "—")
    assert line_of(section(text, 6), "nin-vgg11", "torch")[-2] == "reduced (12000 images)"
    # the chapter's network and one variant per exercise are planned in every backend
    for variant, missing in (("chapter", ("tf", "jax")), ("1x1-0", ("mxnet", "tf", "jax"))):
        for backend in missing:
            assert line_of(section(text, 1), variant, backend)[4] == "not run yet"
    assert not [line for line in section(text, 1).splitlines() if line.startswith("| 1x1-1 | torch |")]
    ex1 = section(text, 1)
    assert "Test CPU (2 cores)" in ex1 and "abc1234, def5678" in ex1 and "quick-b32" in ex1
    assert table_problems(text) == []


def test_every_exercise_has_a_plot(written):
    out, text = written
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == PNG
        assert f"]({name})" in text


def test_runs_at_another_image_size_have_sections_and_plots_of_their_own(tmp_path):
    at131 = [dict(row(v, "torch", seed, acc, acc + 0.01, [300.0] * 3), image_size=131, recipe="quick-nesterov",
                  init_override="kaiming-alive-all", precision="bf16")
             for v, seed, acc in (("chapter", 0, 0.9111), ("chapter", 1, 0.9133), ("gradual", 0, 0.9222),
                                  ("fc-head", 0, 0.9000))]
    results = write_rows(tmp_path / "study.jsonl", ROWS + at131)
    # quiet times at 131 px: in bf16 (the runs' precision) and in fp32, which is not theirs
    quiet = [dict(QUIET, variant="gradual", recipe="quick-nesterov", image_size=131, precision=precision,
                  epoch_s_60000=seconds) for precision, seconds in (("bf16", 321.0), ("fp32", 456.0))]
    speed = write_rows(tmp_path / "speed.jsonl", [QUIET] + quiet)
    proc = run("--results", str(results), "--out", str(tmp_path / "out"), "--speed", str(speed))
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "out" / "report.md").read_text()
    # the recipe's size keeps its sections, without the 131-px runs
    assert "0.9111" not in section(text, 1) and "0.9222" not in section(text, 5)
    assert line_of(section(text, 1), "chapter", "torch")[5] == f"{statistics.mean([0.9012, 0.8950, 0.9101]):.4f}"
    at = text.split("## Exercise 5 at 131 px:")[1].split("\n## ")[0]
    assert line_of(at, "chapter", "torch")[4:7] == ["0,1", "0.9122", "0.9111–0.9133"]
    assert line_of(at, "gradual", "torch")[5] == "0.9222" and "131 px" in at and "quick-nesterov" in at
    costs = resources(build_spec("gradual"), 131, 1).totals
    assert line_of(at, "gradual", "torch")[8:10] == [f"{costs['params']:,}", f"{costs['macs']:,}"]
    assert line_of(at, "gradual", "torch")[-1] == "321.0" and line_of(at, "chapter", "torch")[-1] == "—"
    assert line_of(section(text, 1), "chapter", "torch")[-1] == "123.4"
    ex4 = text.split("## Exercise 4 measured on training")[1].split("\n## ")[0]
    assert [line.split(" | ")[3:5] for line in ex4.splitlines() if line.startswith("| gradual | torch |")] == \
        [["131", "fp32"], ["131", "bf16"]]  # fp32 first at each size
    # only the exercises with a variant run at 131 px, each with its plot; nothing planned per backend there
    assert [line.split(":")[0] for line in text.splitlines() if " at 131 px:" in line and line.startswith("## ")] == \
        ["## Exercise 3 at 131 px", "## Exercise 5 at 131 px"]
    assert "](ex5-131px.png)" in at and (tmp_path / "out" / "ex5-131px.png").read_bytes()[:8] == PNG
    assert not [line for line in at.splitlines() if line.startswith("| chapter | mxnet |")]
    assert table_problems(text) == []


def test_a_bad_line_is_one_line_exit_2_and_nothing_written(tmp_path):
    results = write_rows(tmp_path / "study.jsonl", ROWS[:2])
    with open(results, "a") as f:
        f.write("{not json\n")
    out = tmp_path / "out"
    proc = run("--results", str(results), "--out", str(out))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "expected a JSON object" in proc.stderr and "line 3" in proc.stderr
    assert not out.exists()


def test_a_missing_results_file_is_refused(tmp_path):
    proc = run("--results", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "no such file" in proc.stderr and not (tmp_path / "out").exists()


def trace_row(variant, init, dead, channels=10):
    steps = [0, 10, 25, 50, 100, 1875][:len(dead)]
    return dict(kind="trace", variant=variant, backend="torch", seed=0, init=init, recipe="quick-b32",
                channels=channels, steps=steps, dead=dead,
                epoch_ends=[dict(epoch=1, step=steps[-1], dead=dead[-1], train_loss=0.8, train_acc=0.7, seconds=1.0)])


def test_dead_channels_along_training_and_at_the_end(tmp_path):
    """A trace's first, largest (with its step) and epoch-1 counts; the end count of the same run's checkpoint."""
    results = write_rows(tmp_path / "study.jsonl", ROWS)
    dead = write_rows(tmp_path / "dead.jsonl", [
        trace_row("gradual", "kaiming-alive", [5, 7, 8, 8, 6, 0]),
        trace_row("fc-head-wide", "kaiming-alive-all", [0, 0, 3, 1, 0, 0], channels=384),
        dict(variant="gradual", backend="torch", seed=0, init="kaiming-alive", recipe="quick-b32", channels=10,
             dead_start=5, dead_end=2, epoch=4, epochs=4)])
    out = tmp_path / "out"
    proc = run("--results", str(results), "--out", str(out), "--dead", str(dead))
    assert proc.returncode == 0, proc.stderr
    text = (out / "report.md").read_text().split("## Dead class channels along training")[1]
    assert not table_problems(text)
    assert "| `gradual` | kaiming-alive | torch | 0 | 10 | 5 | 8 (25) | 0 | 2 (epoch 4) |" in text
    assert "| `fc-head-wide` | kaiming-alive-all | torch | 0 | 384 | 0 | 3 (25) | 0 | not counted |" in text
    assert (out / "dead.png").read_bytes().startswith(PNG)
    empty = run("--results", str(results), "--out", str(tmp_path / "none"), "--dead", str(tmp_path / "no.jsonl"))
    assert empty.returncode == 0, empty.stderr
    assert "Not traced yet" in (tmp_path / "none" / "report.md").read_text()


def accuracy_row(backend, seed, final, label="quick-b32", precision="fp32", variant="chapter"):
    accs = [final - 0.06, final - 0.02, final]
    return dict(label=label, recipe="quick-b32", backend=backend, precision=precision, workers=1,
                settings=dict(variant=variant, seed=seed, init="kaiming-alive", image_size=67, batch_size=32),
                n_train=60000, n_val=10000, val_acc=accs, val_loss=[0.4, 0.3, 0.28], train_acc=[0.7, 0.85, 0.9],
                train_loss=[0.8, 0.4, 0.3], train_s=[200.0, 210.0, 205.0], load_avg=[[2.0, 2.0, 2.0]] * 3,
                load_avg_before=[0.5, 0.5, 0.5], machine=dict(cpu="Test CPU", cpu_count=2), commit="acc0001",
                date="2024-01-02T00:00:00", cpu_flags=["avx2"])


def test_the_accuracy_benchmarks_chapter_runs_join_the_study(tmp_path):
    """Full fp32 runs of the study's recipe become chapter rows; a seed the study ran itself keeps its own row;
    reduced, bf16 and other-variant rows stay out."""
    results = write_rows(tmp_path / "study.jsonl", ROWS)
    accuracy = write_rows(tmp_path / "accuracy.jsonl", [
        accuracy_row("tf", 0, 0.9054), accuracy_row("tf", 1, 0.9038), accuracy_row("mxnet", 0, 0.9500),
        accuracy_row("jax", 0, 0.9040, label="reduced"), accuracy_row("jax", 1, 0.9040, precision="bf16")])
    out = tmp_path / "out"
    proc = run("--results", str(results), "--out", str(out), "--accuracy", str(accuracy))
    assert proc.returncode == 0, proc.stderr
    text = section((out / "report.md").read_text(), 1)
    tf = line_of(text, "chapter", "tf")
    assert tf[4] == "0,1" and tf[5] == f"{statistics.mean([0.9054, 0.9038]):.4f}", tf
    assert line_of(text, "chapter", "mxnet")[5] == "0.8999"  # the study's own seed 0 wins
    assert line_of(text, "chapter", "jax")[4] == "not run yet" and "| chapter | torch |" in text
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    refused = run("--results", str(results), "--out", str(tmp_path / "bad"), "--accuracy", str(bad))
    assert refused.returncode == 2 and "expected a JSON object on every line" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_exercise_4_on_training_gives_the_rate_against_the_cost_and_the_memory_against_the_analytic(written):
    text = written[1].split("## Exercise 4 measured on training")[1].split("\n## ")[0]
    cells = line_of(text, "chapter", "torch")
    assert cells[2:6] == ["Quiet CPU (AVX2)", "67", "fp32", "32"]
    assert cells[6:11] == ["486", "123", "53,940,520", "157.3", "100%"]
    assert cells[11:15] == ["30", "362", "432", "69"]  # analytic, ready, peak, peak − ready (MiB)
    assert "Quiet CPU (AVX2)" in text and "156.5 GFLOP/s" in text and "2 epochs of 3200 training images" in text
    assert not table_problems(text)


def test_exercise_4_without_quiet_runs_says_how_to_make_them(tmp_path):
    results = write_rows(tmp_path / "study.jsonl", ROWS)
    proc = run("--results", str(results), "--out", str(tmp_path / "out"), "--speed", str(tmp_path / "none.jsonl"))
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "out" / "report.md").read_text().split("## Exercise 4 measured on training")[1]
    assert "No quiet-machine runs yet: `python -m benchmarks.variant_speed --backend all`." in text


def test_a_seed_that_did_not_learn_is_marked_and_still_counted(tmp_path):
    rows = [row("1x1-1", "torch", 0, 0.9000, 0.9100, [90.0] * 3), row("1x1-1", "torch", 1, 0.1000, 0.0990, [90.0] * 3)]
    results = write_rows(tmp_path / "study.jsonl", rows)
    proc = run("--results", str(results), "--out", str(tmp_path / "out"), "--speed", str(tmp_path / "none.jsonl"))
    assert proc.returncode == 0, proc.stderr
    cells = line_of(section((tmp_path / "out" / "report.md").read_text(), 1), "1x1-1", "torch")
    assert cells[4:7] == ["0,1 (1 at chance)", "0.5000", "0.1000–0.9000"]


def test_the_study_is_written_as_nin_compares_report(tmp_path):
    """``--compare DIR``: the study's full runs with the recipe's init (not the reduced nin-vgg11, not another
    init) as ``nin compare``'s report and plots: each run, its parameters counted by its framework, each
    (variant, backend) over its seeds, the CPUs the runs came from."""
    for name in sorted({r["backend"] for r in ROWS}):  # each run's model is built by its own framework
        require_installed(name)
    other_init = dict(row("gradual", "torch", 0, 0.9000, 0.9100, [80.0] * 3), init_override="kaiming-alive-all")
    results = write_rows(tmp_path / "study.jsonl", ROWS + [other_init])
    out = tmp_path / "compare"
    proc = run("--results", str(results), "--out", str(tmp_path / "out"), "--compare", str(out))
    assert proc.returncode == 0, proc.stderr
    text = (out / "report.md").read_text()
    assert not table_problems(text)
    for name in ("curves.png", "resources.png", "results.png"):
        assert (out / name).read_bytes().startswith(PNG)
    over = text.split("## Over seeds")[1].split("\n## ")[0]
    for variant, backend in (("chapter", "torch"), ("1x1-0", "torch"), ("chapter", "mxnet")):
        runs = [r for r in ROWS if r["variant"] == variant and r["backend"] == backend]
        accs = [r["val_acc"] for r in runs]
        cells = line_of(over, variant, backend)
        assert cells[2] == ",".join(str(r["seed"]) for r in runs)
        assert cells[3] == f"{statistics.mean(accs):.4f}"
        assert cells[5] == f"{statistics.mean(r['train_acc'] - r['val_acc'] for r in runs):+.4f}"
        assert cells[6] == f"{statistics.mean(statistics.mean(r['epoch_s']) for r in runs):.1f}"
    results_table = text.split("## Results")[1].split("\n## ")[0]
    assert "nin-vgg11" not in text and "gradual" not in results_table
    chapter = [c.strip() for c in results_table.splitlines()[4].strip("|").split("|")]  # chapter, torch, seed 0
    assert chapter[:4] == ["chapter", "torch", "0", "1,992,166"] and chapter[11] == "0.9012"
    assert "Test CPU (AVX2) (6 runs)" in text and "### 1x1-0" in text  # a shape table per variant
