"""``nin compare`` end to end on a tiny subset, in every registered backend."""
import re
import subprocess
import sys

from common.engine.registry import BACKENDS


def test_compare_writes_report_and_plots(all_backends, fashion_mnist, tmp_path):
    out = tmp_path / "cmp"
    res = subprocess.run([sys.executable, "-m", "common.cli", "compare", "--backend", "all",
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
    names = "|".join(BACKENDS)
    rows = re.findall(rf"^\| (chapter|1x1-0) \| ({names}) \| ([\d,]+) \| ([\d,]+) \|", report, re.M)
    assert len(rows) == 2 * len(BACKENDS)
    params = {(v, b): int(p.replace(",", "")) for v, b, p, _ in rows}
    assert {params[("chapter", b)] for b in BACKENDS} == {1_992_166}
    assert all(params[("1x1-0", b)] < params[("chapter", b)] for b in BACKENDS)
    # shape tables side by side: NCHW for torch/mxnet, NHWC for tf and jax
    assert "(1, 96, 15, 15)" in report and "(1, 15, 15, 96)" in report
    for v in ("chapter", "1x1-0"):
        for b in BACKENDS:
            assert (out / "runs" / f"{v}-{b}" / "metrics.jsonl").exists()


def test_compare_rejects_unknown_variant_before_training(tmp_path):
    res = subprocess.run([sys.executable, "-m", "common.cli", "compare", "--variants", "chapter,vgg", "--out",
                          str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "expected variant to be one of" in res.stderr and "'vgg'" in res.stderr
    assert not (tmp_path / "x").exists()
