"""Trained weights shipped with the package: NiN(weights=...) in every backend, their metadata and checks, the
stated accuracy reproduced, and the same answers across backends, ONNX Runtime and the float64 reference."""
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from nin_common import cli
from nin_common.arch import pretrained
from nin_common.engine import data, recipes, registry
from nin_common.tools.parity import REFERENCE, TOLERANCE
from conftest import REPO

NAME = "quick"  # the weights the checks of one name use: the smallest image size, so the fastest
NAMES = pretrained.names()  # every shipped name is checked where its own figures are at stake


def test_the_quick_recipes_weights_are_shipped():
    assert NAME in NAMES


def test_the_wheel_carries_every_shipped_file(tmp_path):
    """What ``pip install`` installs is the wheel: it must hold the index and every weights file, unchanged."""
    src = tmp_path / "src"
    src.mkdir()
    for item in ("pyproject.toml", "setup.py", "nin_runtime.pth", "README.md", "MANIFEST.in"):
        shutil.copy(os.path.join(REPO, item), src / item)
    for package in ("common",) + tuple(f"nin_{b}" for b in registry.BACKENDS):
        shutil.copytree(os.path.join(REPO, package), src / package, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(tmp_path / "out"), str(src)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "out").glob("nin-*.whl")
    with zipfile.ZipFile(wheel) as z:
        tops = {n.split("/")[0] for n in z.namelist() if "/" in n and ".dist-info/" not in n}
        assert tops == {"nin_common"} | {f"nin_{b}" for b in registry.BACKENDS}  # no "common" of nin's
        z.extractall(tmp_path / "installed", [n for n in z.namelist() if n.startswith("nin_common/arch/trained/")])
    shipped = tmp_path / "installed" / "nin_common" / "arch" / "trained"
    index = json.loads((shipped / "index.json").read_text(encoding="utf-8"))
    with open(pretrained.INDEX, encoding="utf-8") as f:
        assert index == json.load(f) and sorted(index) == sorted(NAMES)
    for meta in index.values():
        assert pretrained.sha256_file(str(shipped / meta["file"])) == meta["sha256"]


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_readable_without_a_model(name):
    meta = pretrained.metadata(name)
    recipe = recipes.resolve(meta["recipe"])  # the weights' name is the recipe that trained them
    assert meta["recipe"] == name and meta["variant"] == "chapter"
    assert meta["image_size"] == recipe["image_size"] and meta["init"] == recipe["init"]
    assert meta["classes"] == list(data.CLASS_NAMES) and meta["test_accuracy"] >= 0.80
    assert meta["storage"] in ("float16", "float32") and len(meta["sha256"]) == 64
    assert {"resize", "scale", "invert"} <= set(meta["preprocessing"])
    assert pretrained.sha256_file(pretrained.path_of(name)) == meta["sha256"]


def test_the_quick_weights_reach_the_quick_recipes_target():
    assert pretrained.metadata(NAME)["test_accuracy"] >= 0.90


@pytest.mark.parametrize("name", NAMES)
def test_trained_model_in_every_backend(backend, name):
    meta = pretrained.metadata(name)
    model = backend.NiN(weights=name)
    assert model.image_size == meta["image_size"] and model.config.init == meta["init"]
    stored = pretrained.load(name)
    exported = backend.export_weights(model)
    assert list(exported) == list(stored)
    for key, arr in stored.items():
        np.testing.assert_array_equal(exported[key], arr, err_msg=key)
    # the arguments it fixes may be given when they agree
    assert backend.NiN(weights=name, image_size=meta["image_size"], num_classes=10).image_size == meta["image_size"]


def _contradicting(arg: str, meta: dict):
    """A value of ``arg`` that the weights ``meta`` describe do not fit."""
    return {"image_size": meta["image_size"] + 32, "num_classes": 7, "variant": "3x3",
            "init": "kaiming" if meta["init"] != "kaiming" else "xavier"}[arg]


@pytest.mark.parametrize("arg", ["image_size", "num_classes", "variant", "init"])
def test_weights_that_do_not_fit_are_one_line(backend, arg):
    value = _contradicting(arg, pretrained.metadata(NAME))
    with pytest.raises(ValueError) as err:
        backend.NiN(weights=NAME, **{arg: value})
    text = str(err.value)
    assert "\n" not in text and f"expected {arg} to be" in text and repr(value) in text


@pytest.mark.parametrize("name", ["imagenet", 3, ""])
def test_unknown_weights_are_one_line(backend, name):
    listed = ", ".join(f"'{n}'" for n in NAMES)
    with pytest.raises(ValueError, match=re.escape(f"expected weights to be None or one of {listed}, got {name!r}")):
        backend.NiN(weights=name)


def test_damaged_file_is_refused_before_use(tmp_path, monkeypatch, backend):
    folder = tmp_path / "trained"
    shutil.copytree(pretrained.TRAINED_DIR, folder)
    raw = bytearray((folder / f"{NAME}.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (folder / f"{NAME}.npz").write_bytes(bytes(raw))
    monkeypatch.setattr(pretrained, "TRAINED_DIR", str(folder))
    monkeypatch.setattr(pretrained, "INDEX", str(folder / "index.json"))
    with pytest.raises(ValueError, match=r"expected quick.npz with sha256 [0-9a-f]{64}, got [0-9a-f]{64} \(the file "
                                         r"is damaged"):
        backend.NiN(weights=NAME)


# A full evaluation costs in proportion to the multiply-adds of an image: the suite evaluates weights of up to
# 96x96 pixels on all 10,000 test images itself (the quick ones, 67 px: seconds per backend); the chapter's, at
# 224 px (11x the multiply-adds of 67 px), took 3 to 8 minutes per backend, so their full evaluation is the
# agreement benchmark's, whose committed row the suite holds the shipped file to (below).
EVALUATED_HERE = [n for n in NAMES if pretrained.metadata(n)["image_size"] <= 96]
AGREEMENT_ROWS = os.path.join(REPO, "benchmarks", "results", "agreement.jsonl")


@pytest.mark.parametrize("name", EVALUATED_HERE)
def test_evaluate_reproduces_the_stated_accuracy(backend, name, capsys):
    assert cli.main(["evaluate", "--weights", name, "--backend", backend.BACKEND, "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 10000 and result["precision"] == "fp32"
    assert result["acc"] == pretrained.metadata(name)["test_accuracy"]


@pytest.mark.parametrize("name", NAMES)
def test_the_stated_accuracy_is_the_agreement_benchmarks_on_the_shipped_file(name):
    """The newest row of ``benchmarks/agreement.py`` over all 10,000 test images for these weights evaluated the
    very file that ships (its sha256), and every registered backend, like the float64 reference, gave the stated
    accuracy and the reference's class on every image."""
    with open(AGREEMENT_ROWS, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    full = [r for r in rows if r["weights"] == name and r["n"] == 10000 and "sha256" in r]
    assert full, f"no full agreement row for {name!r}: python -m benchmarks.agreement --weights {name}"
    row, meta = full[-1], pretrained.metadata(name)
    assert row["sha256"] == meta["sha256"] == pretrained.sha256_file(pretrained.path_of(name))
    assert row["reference_accuracy"] == meta["test_accuracy"]
    for backend in registry.BACKENDS:
        assert row["accuracy"][backend] == meta["test_accuracy"], backend
        assert row["agree_with_reference"][backend] == 10000, backend


def test_evaluate_takes_a_checkpoint_or_weights_not_both(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path), "--weights", NAME]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected a checkpoint or --weights, got both" in err[0]


@pytest.mark.parametrize("name", NAMES)
def test_same_answers_wherever_float32_rounding_cannot_flip_them(all_backends, name, monkeypatch):
    monkeypatch.syspath_prepend(REPO)
    from benchmarks import agreement as A

    # the float64 reference costs most here: 300 images at 67 px; 100 at 224 px, where each costs 11 times as much
    split = data.load("test", limit=300 if pretrained.metadata(name)["image_size"] <= 96 else 100, progress=False)
    result = A.agreement([m.BACKEND for m in all_backends], name, split.images)
    ref = result.classes[REFERENCE]
    # the premise of the bound: every float32 row within the forward parity tolerance of float64
    for name, deviation in result.deviation.items():
        assert deviation <= TOLERANCE["forward"], name
    safe = result.margins > result.bound
    assert safe.sum() >= 0.95 * result.n  # the bound is not so loose that it excuses everything
    for name, pred in result.classes.items():
        np.testing.assert_array_equal(pred[safe], ref[safe], err_msg=name)
    assert (ref == split.labels).mean() > 0.8
