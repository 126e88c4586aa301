"""``nin convert --to onnx``: every backend's checkpoint becomes an ONNX graph that ONNX Runtime runs to the float64
reference within 1e-5 (relative to the largest logit, as parity's forward check); parity's ONNX Runtime rows."""
import json
import sys

import numpy as np
import pytest

from nin_common import cli
from nin_common.arch import reference
from nin_common.arch.config import model_config
from nin_common.engine import data, registry
from nin_common.tools import onnx_graph, parity
from conftest import DENSE_SIZE, to_layout

SIZE = 67  # the smallest image the chapter's network takes
TOL = parity.TOLERANCE["forward"]  # 1e-5 of max|reference logit|; converters such as onnx2tf check at 1e-4


def batch(n, c, size, seed=0):
    return np.random.default_rng(seed).random((n, c, size, size), dtype=np.float32)


def assert_matches_reference(onnx_path, weights, kwargs, x):
    ref = reference.forward(model_config(**kwargs).spec, weights, x)
    got = onnx_graph.predict(str(onnx_path), x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).max() <= TOL * np.abs(ref).max()
    return got


@pytest.mark.parametrize("variant", ["chapter", "dense_head", "cifar10"])
def test_native_checkpoint_converts_and_matches_reference(backend, tmp_path, dense_variant, variant, capsys):
    kwargs = dict(variant=variant, seed=3, init="kaiming",
                  image_size={"chapter": SIZE, "dense_head": DENSE_SIZE, "cifar10": 32}[variant],
                  in_channels=3 if variant == "cifar10" else 1)
    model = backend.NiN(**kwargs)
    path = tmp_path / f"model{registry.info(backend.BACKEND).native_suffix}"
    backend.save_native(model, path)
    out = tmp_path / "model.onnx"
    assert cli.main(["convert", str(path), "--to", "onnx", "--out", str(out)]) == 0
    assert f"-> {out} (onnx)" in capsys.readouterr().out
    x = batch(3, kwargs["in_channels"], kwargs["image_size"])
    got = assert_matches_reference(out, backend.export_weights(model), model.config.kwargs, x)
    native = backend.predict(model, to_layout(x, backend.DATA_FORMAT))
    assert np.abs(got - native).max() <= 2 * TOL * np.abs(native).max()  # both within TOL of the reference
    meta = onnx_graph.read_meta(out)
    assert meta["format"] == onnx_graph.FORMAT and meta["nin.source"] == backend.BACKEND
    assert json.loads(meta["nin.model"]) == model.config.kwargs


def test_run_folder_converts_with_its_trained_weights(backend, tmp_path):
    try:
        data.locate(download_to_cache=False)
    except data.DataUnavailable as err:
        pytest.fail(f"needs Fashion-MNIST: {err}", pytrace=False)
    run = tmp_path / "run"
    registry.part(backend.BACKEND, "training").fit(epochs=1, image_size=SIZE, batch_size=16, limit_train=16,
                                                    limit_val=16, init="kaiming", device="cpu", out=str(run),
                                                    progress=False)
    out = tmp_path / "run.onnx"
    assert cli.main(["convert", str(run), "--to", "onnx", "--out", str(out)]) == 0
    from nin_common.engine import checkpoint
    mod, model, _ = checkpoint.load_checkpoint(str(run))
    trained = mod.export_weights(model)
    assert np.abs(trained["block0.conv0.weight"] - model_config(**model.config.kwargs).initial_weights()[
        "block0.conv0.weight"]).max() > 0  # the run's weights, not the initial ones
    assert_matches_reference(out, trained, model.config.kwargs, batch(4, 1, SIZE, seed=1))
    assert onnx_graph.read_meta(out)["nin.source"] == backend.BACKEND


def test_parity_runs_onnx_runtime_against_the_reference(backend):
    diffs = parity.run_checks([backend], ["forward", "layers"], image_size=SIZE, batch=2, seed=1, onnx=True)
    rows = {(r.pair, r.check): r for r in parity.summarize(diffs)}
    pair = f"{parity.ONNX} vs {parity.REFERENCE}"
    for check in ("forward (logits)", "layer outputs"):
        assert rows[(pair, check)].passed and rows[(pair, check)].tol == TOL
    assert len([d for d in diffs if d.pair == pair and d.check == "layers"]) == len(model_config().spec.layers)


def test_onnx_parity_fails_on_wrong_weights():
    """The ONNX rows can fail: a graph built with other weights differs from the reference."""
    cfg = model_config(seed=0, init="kaiming", image_size=SIZE)
    weights = cfg.initial_weights()
    other = dict(weights, **{"block3.conv2.bias": weights["block3.conv2.bias"] + 0.01})
    x = batch(2, 1, SIZE)
    ref = reference.forward(cfg.spec, weights, x)
    got = onnx_graph.predict(onnx_graph.build(cfg.spec, other, SIZE), x)
    assert np.abs(got - ref).max() > TOL * np.abs(ref).max()


def test_convert_to_onnx_errors(tmp_path, capsys, monkeypatch):
    mod = registry.load(registry.BACKENDS[0])  # any backend writes the checkpoint
    path = tmp_path / f"model{registry.info(mod.BACKEND).native_suffix}"
    mod.save_native(mod.NiN(seed=0, image_size=SIZE), path)
    assert cli.main(["convert", str(path), "--to", "onnx", "--out", str(tmp_path / "m.pb")]) == 2
    assert "expected --out to end with .onnx for --to onnx" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    assert cli.main(["convert", str(path), "--to", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'nin[onnx]'" in err
    assert not (tmp_path / "m.onnx").exists()
    assert cli.main(["parity", "--backends", mod.BACKEND, "--checks", "forward", "--image-size", str(SIZE)]) == 0
    assert "note: ONNX Runtime left out" in capsys.readouterr().out
