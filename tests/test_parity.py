"""Numerical parity: the same weights give the same numbers in every backend and in the float64 reference."""
import os
import subprocess
import sys

import numpy as np
import pytest

from nin_common import cli
from nin_common.engine import registry
from nin_common.tools import parity
from nin_common.arch import reference
from nin_common.arch import spec as S
from nin_common.arch.config import model_config
from conftest import load_backend, pool_oracle

SMALL = 72  # a small image size: the chapter net survives from 67 px
FLOAT64_AGREEMENT = 1e-9  # float64 backends agree to ~1e-14; float32 ones only to ~1e-6, which this tells apart


def pairs(mods):
    """How many pairs of backends ``mods`` make."""
    return len(mods) * (len(mods) - 1) // 2


def assert_all_pass(diffs, count=None):
    failed = [d for d in diffs if not d.passed]
    assert not failed, failed[:5]
    if count is not None:
        assert len(diffs) == count


def assert_float64_agreement(diffs):
    """Far inside the tolerances: the backends really computed in float64 (float32 would pass 1e-4 too)."""
    worst = max(diffs, key=lambda d: d.rel)
    assert worst.rel < FLOAT64_AGREEMENT, worst


# --- the reference itself, against direct loops on tiny inputs --------------------------------------------------

def direct_conv(x, w, b, stride, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, wd = x.shape
    o, _, k, _ = w.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w) + b
    return out


@pytest.mark.parametrize("kernel,stride,pad", [(11, 4, 0), (5, 1, 2), (3, 1, 1), (3, 2, 1), (1, 1, 0)])
def test_reference_conv_matches_direct_loops(kernel, stride, pad):
    rng = np.random.default_rng(kernel * 10 + stride)
    x, w, b = rng.normal(size=(2, 3, 19, 17)), rng.normal(size=(4, 3, kernel, kernel)), rng.normal(size=4)
    np.testing.assert_allclose(reference.conv2d(x, w, b, stride, pad), direct_conv(x, w, b, stride, pad),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [7, 8, 9, 10])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_reference_pool_matches_direct_loops(size, ceil_mode):
    x = np.random.default_rng(size).normal(size=(2, 3, size, size + 1))
    np.testing.assert_array_equal(reference.max_pool(x, 3, 2, ceil_mode), pool_oracle(x, "max", 3, 2, ceil_mode))


@pytest.mark.parametrize("size", [7, 8, 9, 10])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_reference_avg_pool_matches_direct_loops(size, ceil_mode):
    x = np.random.default_rng(size).normal(size=(2, 3, size, size + 1))
    np.testing.assert_allclose(reference.avg_pool(x, 3, 2, ceil_mode), pool_oracle(x, "avg", 3, 2, ceil_mode),
                               rtol=1e-12, atol=1e-12)


def test_reference_head_and_loss():
    spec = S.NetSpec(2, (S.GlobalAvgPool(), S.Flatten(), S.Dense(3)))
    w = {"dense0.weight": np.arange(6.0).reshape(3, 2), "dense0.bias": np.array([0.5, 0.0, -0.5])}
    x = np.random.default_rng(0).normal(size=(4, 2, 5, 5))
    outs = reference.layer_outputs(spec, w, x)
    assert [o.shape for o in outs] == [(4, 2, 1, 1), (4, 2), (4, 3)]
    np.testing.assert_allclose(outs[-1], x.mean(axis=(2, 3)) @ w["dense0.weight"].T + w["dense0.bias"])
    logits, y = outs[-1], np.array([0, 2, 1, 1])
    expected = np.mean([np.log(np.exp(z).sum()) - z[t] for z, t in zip(logits, y)])
    assert reference.cross_entropy(logits, y) == pytest.approx(expected, rel=1e-12)


# --- forward and layer by layer ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [67, 224])
def test_forward_matches_reference(backend, size):
    diffs = parity.run_checks([backend], ["forward"], image_size=size, seed=1)
    assert_all_pass(diffs, count=1)
    assert diffs[0].tol == 1e-5 and diffs[0].pair == f"{backend.BACKEND} vs reference"


@pytest.mark.parametrize("size", [SMALL, 224])
def test_layers_agree_with_reference_and_across_backends(all_backends, size):
    diffs = parity.run_checks(all_backends, ["forward", "layers"], image_size=size, seed=2)
    n = len(all_backends) + pairs(all_backends)  # each vs the reference, and each pair
    assert_all_pass(diffs, count=n + n * 10)  # forward, and 10 top-level layers each


@pytest.mark.parametrize("name,layer", [("block0.conv0.bias", 0), ("block2.conv1.weight", 4),
                                        ("block3.conv2.weight", 7)])
def test_first_diverging_layer_is_named(backend, name, layer):
    kwargs = dict(image_size=SMALL, seed=0, init="kaiming")
    weights = backend.export_weights(backend.NiN(**kwargs))
    models = parity.build_models([backend], weights, **kwargs)
    wrong = dict(weights, **{name: weights[name] + 0.01 * max(np.abs(weights[name]).max(), 1.0)})
    backend.import_weights(models[backend.BACKEND], wrong)
    diffs = parity.run_checks([backend], ["layers"], models=models, weights=weights, **kwargs)
    pair = f"{backend.BACKEND} vs reference"
    assert parity.first_failure(diffs, pair, "layers").item == f"layer {layer} (Block)"
    assert all(d.passed for d in diffs[:layer])
    [row] = parity.summarize(diffs)
    assert not row.passed and row.where == f"first diverging: layer {layer} (Block)"


def test_dense_head_parity(all_backends, dense_variant):
    diffs = parity.run_checks(all_backends, ["forward", "layers", "grads"], seed=3, **dense_variant)
    assert_all_pass(diffs)
    assert any(d.item == "dense0.weight" for d in diffs if d.check == "grads")
    assert_float64_agreement([d for d in diffs if d.check not in ("forward", "layers")])


# --- gradients, one SGD step, and a trajectory (float64 by default) ----------------------------------------------
# In float32 these checks fail on this CPU for seed 2 at 72 px and seed 0 at 224 px (gradients, 5e-3 to 7e-3) and for
# seeds 3, 5, 7, 9 at 72 px (trajectory, up to 2e-2): ReLU inputs within rounding of 0 are gated differently by the
# frameworks. In float64 (the default) every seed measured agrees to ~1e-14.

@pytest.mark.parametrize("size,seed", [(SMALL, 0), (SMALL, 1), (SMALL, 2), (224, 0)])
def test_gradients_and_one_sgd_step_agree(all_backends, size, seed):
    # 2 images at 224 px (float64 convolutions are slow in JAX on a CPU), the default 4 at the small size
    diffs = parity.run_checks(all_backends, ["grads"], image_size=size, seed=seed, lr=0.05,
                              batch=2 if size == 224 else 4)
    n, p = len(all_backends), pairs(all_backends)
    assert_all_pass(diffs, count=n + p + 2 * p * 24)  # loss vs reference, loss pairs; 24 arrays twice per pair
    assert {d.tol for d in diffs if d.check in ("grads", "sgd step")} == {1e-4}
    assert_float64_agreement(diffs)


def test_float32_gradients_steps_and_trajectory_hold_to_their_bound(all_backends):
    diffs = parity.run_checks(all_backends, ["grads", "steps"], image_size=SMALL, seed=0, steps=4, grad_dtype="float32")
    assert_all_pass(diffs, count=len(all_backends) * (1 + 2 * 24 + 4))  # loss, 24 arrays twice, 4 steps
    assert {d.pair for d in diffs} == {f"{m.BACKEND} float32 vs float64" for m in all_backends}
    assert max(d.rel for d in diffs) > FLOAT64_AGREEMENT  # float32 rounding shows: these are the float32 models
    # a bound per tensor, far below what a reduced-precision kernel costs (TF32 rounds at ~5e-4, bf16 at ~4e-3)
    grads = [d for d in diffs if d.check == "grads"]
    assert len({d.tol for d in grads}) > 1 and np.median([d.tol for d in grads]) < 1e-4
    with pytest.raises(ValueError, match="expected grad_dtype to be one of float64, float32, both, got 'float16'"):
        parity.run_checks(all_backends, ["grads"], image_size=SMALL, grad_dtype="float16")


def _mantissa(a, bits):
    """``a`` (float32) with only ``bits`` bits of mantissa: what a TF32 (10) or bf16 (7) kernel keeps."""
    a = np.asarray(a)
    if a.dtype != np.float32:
        return a
    return (a.view(np.uint32) & np.uint32((0xFFFFFFFF << (23 - bits)) & 0xFFFFFFFF)).view(np.float32)


def test_a_float32_kernel_that_drifts_fails_the_float32_checks(backend, monkeypatch):
    """Planted: float32 gradients kept to TF32's 10 mantissa bits, and float32 SGD steps taken on bf16 inputs.
    Both float32 checks fail."""
    hooks = parity.hooks(backend)
    grads_of, step_of = hooks.loss_and_grads, hooks.sgd_step

    def tf32_grads(model, x, y):
        loss, grads = grads_of(model, x, y)
        return loss, {k: _mantissa(g, 10) for k, g in grads.items()}

    def bf16_steps(model, x, y, lr):  # the float32 models only: their float64 copies take the same inputs
        float32 = next(iter(hooks.parameters(model).values())).dtype == np.float32
        return step_of(model, _mantissa(x, 7) if float32 else x, y, lr)

    monkeypatch.setattr(hooks, "loss_and_grads", tf32_grads)
    monkeypatch.setattr(hooks, "sgd_step", bf16_steps)
    diffs = parity.run_checks([backend], ["grads", "steps"], image_size=SMALL, seed=0, steps=4, grad_dtype="float32")
    failed = {(d.check, d.item) for d in diffs if not d.passed}
    assert sum(check == "grads" for check, _ in failed) >= 12, failed  # half the 24 arrays or more
    assert ("steps", "step 1") in failed, failed


def test_sgd_step_is_plain_sgd_without_dropout_on_a_float64_copy(backend):
    model = backend.NiN(seed=0, init="kaiming", image_size=SMALL)
    hooks, start = parity.hooks(backend), backend.export_weights(model)
    double = hooks.as_float64(model)
    before = hooks.parameters(double)
    assert all(before[k].dtype == np.float64 and np.array_equal(before[k], start[k]) for k in start)
    (x, y), = parity.make_batches(model.spec, SMALL, 4, seed=0)
    loss, grads = hooks.loss_and_grads(double, parity.array_to_layout(x, backend.DATA_FORMAT), y)
    assert loss == pytest.approx(reference.cross_entropy(reference.forward(model.spec, start, x), y), rel=1e-12)
    again, grads_again = hooks.loss_and_grads(double, parity.array_to_layout(x, backend.DATA_FORMAT), y)
    assert loss == again and all(np.array_equal(grads[k], grads_again[k]) for k in grads)  # no dropout
    assert all(g.dtype == np.float64 for g in grads.values())
    assert all(np.abs(g).max() > 0 for k, g in grads.items() if k.endswith("weight"))
    lr = parity.float32_lr(0.05)
    assert hooks.sgd_step(double, parity.array_to_layout(x, backend.DATA_FORMAT), y, lr) == loss
    after = hooks.parameters(double)
    for name in before:
        np.testing.assert_allclose(after[name], before[name] - lr * grads[name], rtol=0,
                                   atol=1e-14 * max(np.abs(before[name]).max(), 1e-3), err_msg=name)
    # the float32 model is left as it was
    assert all(v.dtype == np.float32 for v in hooks.parameters(model).values())
    assert all(np.array_equal(v, start[k]) for k, v in backend.export_weights(model).items())


@pytest.mark.parametrize("seed", [9])  # fails in float32 here (2e-2 at step 12); one seed: 20 steps are slow
def test_sgd_trajectory_losses_agree(all_backends, seed):
    kwargs = dict(image_size=SMALL, seed=seed, init="kaiming")
    weights = model_config(**kwargs).initial_weights()
    models = parity.float64_models(all_backends, parity.build_models(all_backends, weights, **kwargs))
    batches = parity.make_batches(S.chapter(), SMALL, 4, seed=seed, count=20)
    losses = parity.trajectories(all_backends, models, batches, lr=0.05)
    diffs = parity.step_diffs(losses)
    assert_all_pass(diffs, count=pairs(all_backends) * 20)
    assert {d.tol for d in diffs} == {1e-3}
    assert_float64_agreement(diffs)
    assert all(np.ptp(run) > 0.1 for run in losses.values())  # the loss moves


def test_steps_check_tells_a_different_learning_rate(all_backends):
    torch_mod = all_backends[0]
    kwargs = dict(image_size=SMALL, seed=0, init="kaiming")
    batches = parity.make_batches(torch_mod.NiN(**kwargs).spec, SMALL, 4, seed=0, count=5)
    runs = {lr: parity.trajectories([torch_mod], {"torch": torch_mod.NiN(**kwargs)}, batches, lr)["torch"]
            for lr in (0.05, 0.0505)}
    diffs = parity.step_diffs({"lr 0.05": runs[0.05], "lr 0.0505": runs[0.0505]})
    assert diffs[0].passed  # the first loss comes before any update
    assert not all(d.passed for d in diffs)


# --- the command -------------------------------------------------------------------------------------------------

def test_cli_parity_passes(all_backends, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: every cell on one line
    code = cli.main(["parity", "--image-size", str(SMALL), "--checks", "forward,layers,grads", "--seed", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    for text in ("pair", "check", "max abs diff", "relative error", "tolerance", "torch vs reference",
                 "layer outputs", "gradients", "gradients and SGD in float64 and float32",
                 "onnxruntime vs reference", f"{all_backends[0].BACKEND} float32 vs float64"):
        assert text in out
    names, p = [b.BACKEND for b in all_backends], pairs(all_backends)
    rows = 3 * (len(names) + p) + 2 * p + 2 + 3 * len(names)  # forward, layers, loss: each vs the reference and
    # each pair; grads, step: each pair; ONNX Runtime vs the reference: forward, layers; float32 against float64:
    # loss, grads, step, each backend
    assert f"{names[-2]} vs {names[-1]}" in out and f"{rows} of {rows} checks passed" in out
    assert "FAIL" not in out


def test_cli_parity_table_fits_the_terminal(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert cli.main(["parity", "--backends", registry.BACKENDS[0], "--image-size", str(SMALL), "--checks",
                     "forward,grads", "--grad-dtype", "float32"]) == 0  # long pairs and tensor names
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80 and any("reference" in line for line in lines)
    assert not any("…" in line for line in lines)  # a long name folds onto the next line, never cut


def test_cli_parity_grad_dtype_must_be_a_float(capsys):
    assert cli.main(["parity", "--grad-dtype", "float16"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'float16'" in err and len(err.strip().splitlines()) == 1


def test_cli_parity_failure_exits_1(backend, capsys):
    code = cli.main(["parity", "--backend", backend.BACKEND, "--image-size", "67", "--checks", "forward",
                     "--tolerance-scale", "0.001"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out and f"failed: {backend.BACKEND} vs reference forward (logits)" in out


@pytest.mark.parametrize("args,fragment", [
    (["--backend", registry.BACKENDS[0], "--checks", "grads"], "expected at least two backends (or grad dtype float32 alone, each against its own float64 copy), "
     f"got {registry.BACKENDS[0]}"),
    (["--checks", "forward,speed"], "expected checks among forward, layers, grads, steps"),
    (["--backend", f"{registry.BACKENDS[0]},nope"], f"expected backends among {', '.join(registry.BACKENDS)}"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got '0'"),
    (["--image-size", "40"], "expected image_size to be an integer >= 67"),
])
def test_cli_parity_bad_requests_exit_2(capsys, args, fragment):
    assert cli.main(["parity", *args]) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("command", [["parity", "--backend", "torch,mxnet"],
                                     ["convert", "model.params", "--to", "torch", "--out", "model.pt"]])
def test_cli_missing_framework_is_named(tmp_path, command):
    # Hide MXNet from the interpreter: the command must name it and exit 2, not leave it out.
    (tmp_path / "mxnet").mkdir()
    (tmp_path / "mxnet" / "__init__.py").write_text("raise ImportError('No module named mxnet')\n")
    (tmp_path / "model.params").write_bytes(b"")
    (tmp_path / "model.params.json").write_text('{"backend": "mxnet", "model": {}, "format": "nin-native-1"}')
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.getcwd())
    res = subprocess.run([sys.executable, "-m", "nin_common.cli", *command], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "needs MXNet" in res.stderr and "pip install 'nin[mxnet]'" in res.stderr


def test_jax_float64_stays_inside_a_float64_models_functions():
    """JAX's x64 switch is global: the float64 copy's functions turn it on for their own duration only."""
    load_backend("jax")
    import jax
    import jax.numpy as jnp
    from nin_jax import parity as jax_parity
    mod = registry.load("jax")
    model = mod.NiN(image_size=SMALL, seed=0, init="kaiming")
    double = jax_parity.as_float64(model)
    x, y = parity.make_batches(model.spec, SMALL, 2, seed=0)[0]
    x = parity.array_to_layout(x, mod.DATA_FORMAT)
    loss, grads = jax_parity.loss_and_grads(double, x, y)
    jax_parity.sgd_step(double, x, y, 0.05)
    mod.import_weights(double, mod.export_weights(model))
    assert not jax.config.jax_enable_x64 and jnp.zeros(1).dtype == jnp.float32  # nothing leaked
    assert {v.dtype for v in jax_parity.parameters(double).values()} == {np.dtype(np.float64)}  # still float64
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float64)}
    assert {v.dtype for v in jax_parity.parameters(model).values()} == {np.dtype(np.float32)}
