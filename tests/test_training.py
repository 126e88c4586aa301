"""Training in every backend on a small real subset of Fashion-MNIST at 67x67, on the CPU and (``gpu``) the GPU."""
import inspect
import json
import os

import numpy as np
import pytest

from conftest import training_of
from nin_common.engine import checkpoint, data, recipes, registry, training
from nin_common import cli
from nin_common.arch.weights import load_npz

SIZE = 67  # the smallest image the chapter's network takes
SMALL = dict(image_size=SIZE, batch_size=16, limit_train=48, limit_val=32, init="kaiming", progress=False)
STEPS_PER_EPOCH = 3


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request, backend):
    """``cpu``, and ``gpu`` where the framework sees one (skipped with the reason otherwise)."""
    if request.param == "gpu" and training_of(backend).gpu_count() == 0:
        pytest.skip(f"{registry.framework(backend.BACKEND)} sees no GPU")
    return request.param



def npz_weights(run_dir):
    return load_npz(os.path.join(run_dir, "checkpoint", "model.npz"))[0]


def max_abs_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_fit_has_the_same_signature_everywhere(all_backends):
    sigs = [inspect.signature(training_of(b).fit) for b in all_backends]
    assert len(sigs) >= 2 and all(sig == sigs[0] for sig in sigs[1:])  # every installed backend
    assert list(sigs[0].parameters) == ["model", "recipe", "variant", "epochs", "batch_size", "lr", "image_size",
                                        "limit_train", "limit_val", "device", "precision", "seed", "init",
                                        "schedule", "warmup", "momentum", "nesterov", "data_dir", "out", "resume",
                                        "progress", "on_epoch",
                                        "workers", "port"]
    defaults = {k: p.default for k, p in sigs[0].parameters.items()}
    assert defaults["recipe"] == "chapter"  # the settings left None come from it: the chapter's recipe
    assert all(defaults[k] is None for k in recipes.RECIPE_KEYS)
    chapter = recipes.RECIPES["chapter"]
    assert (chapter["epochs"], chapter["batch_size"], chapter["lr"], chapter["image_size"], chapter["init"],
            chapter["schedule"]) == (10, 128, 0.05, 224, "xavier", "constant")
    with pytest.raises(TypeError, match="epoch"):
        training_of(all_backends[0]).fit(epoch=1)  # a misspelt setting is refused, not ignored


def test_few_steps_write_metrics_plot_and_checkpoint(backend, device, tmp_path, capsys):
    run = tmp_path / "run"
    model = training_of(backend).build_model(device, seed=0, init="kaiming", image_size=SIZE)
    rows = training_of(backend).fit(model, epochs=1, device=device, out=str(run), **SMALL)
    printed = capsys.readouterr().out
    assert len(rows) == 1
    row = rows[0]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "images_per_s", "elapsed_s"):
        assert np.isfinite(row[key]), key
    assert 0 <= row["train_acc"] <= 1 and 0 <= row["val_acc"] <= 1 and row["images_per_s"] > 0
    assert (row["epoch"], row["step"], row["n_train"], row["n_val"]) == (1, STEPS_PER_EPOCH, 48, 32)
    # memory: the process's peak (a framework and a model hold more than 50 MiB), the GPU's only on a GPU
    assert 50 < row["peak_rss_mb"] < 64 * 1024
    # ... and the training's own: resident memory once ready, its peak from there (Linux), within the process's
    assert 50 < row["rss_start_mb"] <= row["train_peak_rss_mb"] <= row["peak_rss_mb"]
    assert (row["peak_device_mb"] is None) == (device == "cpu")
    # the device is printed, then one line per epoch
    assert f"{registry.framework(backend.BACKEND)} on {row['device']}" in printed
    assert training.epoch_line(row) in printed
    assert ("cuda" in row["device"] or "gpu" in row["device"].lower()) == (device == "gpu")
    # metrics.jsonl, curves.png, checkpoint/
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = run / "checkpoint"
    native = ckpt / checkpoint.native_name(backend.BACKEND)
    assert native.is_file() and (ckpt / (native.name + ".json")).is_file()
    state = json.loads((ckpt / "state.json").read_text())
    assert (state["epoch"], state["backend"], state["rows"]) == (1, backend.BACKEND, rows)
    trained = backend.export_weights(model)
    assert max_abs_diff(npz_weights(run), trained) == 0
    assert max_abs_diff(backend.export_weights(backend.load_native(native)), trained) == 0
    assert max_abs_diff(trained, backend.export_weights(backend.NiN(seed=0, init="kaiming", image_size=SIZE))) > 0
    assert not [p for p in os.listdir(run) if p.startswith(".tmp") or p.startswith("checkpoint.")]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_small_batch_is_overfitted(backend, device, precision, dense_variant):
    """150 SGD steps on 4 images, in each precision the backend trains in: their loss (dropout off) falls well
    below its start.

    At lr 0.03 this small batch trains at the edge of stability: the training loss spikes now and then (measured
    in TensorFlow fp32, 5 dropout seeds: to 2.1-4.8 after step 100; bf16's rounding makes it likelier), and a
    spike in the last steps left the model where it started (TF bf16 once ended at 2.06).  So the last 30
    steps run at lr 0.003, as a schedule's end does: the test checks that the batch is learnt, not where an
    oscillation happens to be at step 150.  bf16 runs here on every machine.  Where the CPU only emulates it
    (15-30x slower than fp32), the network is the small one with a dense head at 32 px (convolutions, pooling,
    dropout and dense layers, all in bf16): the chapter's network took 25-29 s here in PyTorch and TensorFlow.
    Its class scores are not ReLU outputs, so it starts further from chance (2.98 in every backend).
    """
    from nin_common.util import machine

    split = data.load("train", limit=4)
    small = precision == "bf16" and device == "cpu" and not machine.cpu_bf16()
    kwargs, size, first = ((dense_variant, dense_variant["image_size"], (2.0, 3.5)) if small
                           else (dict(image_size=SIZE), SIZE, (2.0, 2.6)))
    model = training_of(backend).build_model(device, seed=0, init="kaiming", **kwargs)
    try:
        trainer = training_of(backend).Trainer(model, 0.03, device, precision)
    except ValueError as err:  # a backend without bf16 says why (MXNet 1.9)
        assert precision == "bf16" and "precision bf16 is not available in" in str(err)
        return
    assert trainer.precision == precision
    trainer.reseed(1)
    start = trainer.eval_step(split.images, split.labels, size)[0] / 4
    losses = [trainer.train_step(split.images, split.labels, size)[0] / 4 for _ in range(120)]
    trainer.set_lr(0.003)
    losses += [trainer.train_step(split.images, split.labels, size)[0] / 4 for _ in range(30)]
    end = trainer.eval_step(split.images, split.labels, size)[0] / 4
    assert np.all(np.isfinite(losses))
    assert first[0] < start < first[1]
    assert end < 0.5 * start, (start, end, losses[::10])


def test_dropout_active_in_training_off_in_evaluation(backend, device):
    split = data.load("train", limit=16)
    trainer = training_of(backend).Trainer(training_of(backend).build_model(device, seed=0, init="kaiming", image_size=SIZE),
                                    1e-12, device)  # steps too small to change the weights measurably
    trainer.reseed(0)
    evals = [trainer.eval_step(split.images, split.labels, SIZE) for _ in range(2)]
    trains = [trainer.train_step(split.images, split.labels, SIZE)[0] for _ in range(3)]
    assert evals[0] == evals[1]
    assert len(set(trains)) == 3, trains  # a new dropout mask each step
    assert all(abs(t - evals[0][0]) > 1e-6 for t in trains)


def test_resume_equals_uninterrupted(backend, device, tmp_path):
    fit = training_of(backend).fit
    straight = fit(epochs=2, device=device, out=str(tmp_path / "a"), **SMALL)
    fit(epochs=1, device=device, out=str(tmp_path / "b"), **SMALL)
    resumed = fit(epochs=2, device=device, resume=str(tmp_path / "b"), **SMALL)
    diff = max_abs_diff(npz_weights(tmp_path / "a"), npz_weights(tmp_path / "b"))
    if device == "cpu":
        assert diff == 0
        assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in straight]
    else:  # GPU kernels may add in another order from run to run
        assert diff < 1e-3
    assert [r["epoch"] for r in resumed] == [1, 2]
    assert [json.loads(line)["epoch"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    # a finished run has nothing left to do; other settings and an occupied --out are refused
    assert fit(epochs=2, device=device, resume=str(tmp_path / "b"), **SMALL) == resumed
    with pytest.raises(ValueError, match=r"cannot resume .* with other settings: batch_size=8 \(the run has 16\)"):
        fit(epochs=3, device=device, resume=str(tmp_path / "b"), **dict(SMALL, batch_size=8))
    with pytest.raises(ValueError, match="already holds a training run"):
        fit(epochs=1, device=device, out=str(tmp_path / "a"), **SMALL)


def poison(backend, model):
    """Make the last convolution's biases infinite, so that the framework's next loss is NaN.

    (Infinite, not NaN: MXNet's ReLU maps NaN to 0, so a NaN weight need not reach its loss.)  import_weights
    refuses non-finite weights: the test plants them past that check.
    """
    from nin_common.arch import weights as W

    weights = backend.export_weights(model)
    weights["block3.conv2.bias"][:] = np.inf
    check, W.non_finite = W.non_finite, lambda arr: 0
    try:
        backend.import_weights(model, weights)
    finally:
        W.non_finite = check


def test_non_finite_loss_stops_naming_the_step(backend, device, tmp_path, monkeypatch):
    tr, run = training_of(backend), str(tmp_path / "run")
    tr.fit(epochs=1, device=device, out=run, **SMALL)
    good = npz_weights(run)
    calls, train_step = [], tr.Trainer.train_step

    def poisoned_second_step(self, images, labels, image_size):
        calls.append(1)
        if len(calls) == 2:
            poison(backend, self.model)
        return train_step(self, images, labels, image_size)

    monkeypatch.setattr(tr.Trainer, "train_step", poisoned_second_step)
    with pytest.raises(training.NonFiniteLoss) as err:
        tr.fit(epochs=3, device=device, resume=run, **SMALL)
    step = STEPS_PER_EPOCH + 2
    assert (err.value.step, err.value.epoch) == (step, 2)
    message = str(err.value)
    assert f"the loss became nan at step {step} (epoch 2, batch 2 of {STEPS_PER_EPOCH})" in message
    assert "try a lower one than --lr 0.05" in message and "the last good checkpoint (epoch 1) stays" in message
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["epoch"] == 1
    assert max_abs_diff(npz_weights(run), good) == 0
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    # a network that yields NaN from the start stops at step 1
    monkeypatch.setattr(tr.Trainer, "train_step", train_step)
    model = tr.build_model(device, seed=0, init="kaiming", image_size=SIZE)
    poison(backend, model)
    with pytest.raises(training.NonFiniteLoss, match="at step 1 .*no checkpoint was written"):
        tr.fit(model, epochs=1, device=device, **SMALL)


def test_cli_train_resume_evaluate(backend, fashion_mnist, tmp_path, capsys):
    run = str(tmp_path / "run")
    args = ["--image-size", str(SIZE), "--batch-size", "16", "--limit-train", "48", "--limit-val", "32",
            "--init", "kaiming", "--device", "cpu", "--no-progress"]
    assert cli.main(["train", "--backend", backend.BACKEND, "--epochs", "1", "--out", run, *args]) == 0
    assert cli.main(["train", "--resume", run, "--epochs", "2", "--no-progress"]) == 0  # the rest from the run
    capsys.readouterr()
    last = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))][-1]
    assert (last["epoch"], last["batch_size"], last["image_size"], last["n_train"]) == (2, 16, SIZE, 48)
    assert cli.main(["evaluate", "--backend", backend.BACKEND, "--checkpoint", run, "--limit-val", "32", "--json",
                     "--device", "cpu", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["n"], result["image_size"], result["backend"]) == (32, SIZE, backend.BACKEND)
    assert abs(result["loss"] - last["val_loss"]) < 1e-5 and result["acc"] == last["val_acc"]


def test_cli_evaluates_a_run_in_another_backend(all_backends, tmp_path, capsys):
    """One backend's checkpoint, evaluated by each backend through the canonical model.npz."""
    run = str(tmp_path / "run")
    training_of(all_backends[0]).fit(epochs=1, device="cpu", out=run, **SMALL)
    capsys.readouterr()
    results = []
    for b in all_backends:
        assert cli.main(["evaluate", "--backend", b.BACKEND, "--checkpoint", run, "--limit-val", "32", "--json",
                         "--device", "cpu", "--no-progress"]) == 0
        results.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert [r["backend"] for r in results] == [b.BACKEND for b in all_backends]
    assert max(abs(r["loss"] - results[0]["loss"]) for r in results) < 1e-4
    assert len({r["acc"] for r in results}) == 1


def test_device_gpu_without_one_is_a_clear_error(backend):
    tr = training_of(backend)
    if tr.gpu_count() == 0:
        with pytest.raises(ValueError, match=f"--device gpu: {registry.framework(backend.BACKEND)} sees no GPU"):
            tr.select_device("gpu")
        with pytest.raises(ValueError, match="sees no GPU"):
            tr.fit(epochs=1, device="gpu", **SMALL)
        assert tr.select_device("auto") == tr.select_device("cpu")
    else:
        assert tr.select_device("auto") == tr.select_device("gpu") != tr.select_device("cpu")


@pytest.mark.parametrize("kwargs,fragment", [
    ({"epochs": 0}, "expected epochs to be a positive integer, got 0"),
    ({"lr": float("nan")}, "expected lr to be a positive finite number"),
    ({"limit_train": -3}, "expected limit_train to be a positive integer or None, got -3"),
    ({"device": "tpu"}, "expected device to be one of auto, cpu, gpu, got 'tpu'"),
    ({"precision": "fp16"}, "expected precision to be one of auto, fp32, bf16, got 'fp16'"),
    ({"init": "ones"}, "expected init to be one of xavier, kaiming"),
    ({"image_size": 50}, "expected image_size to be an integer >= 67, got 50"),
])
def test_bad_arguments_same_message_everywhere(all_backends, kwargs, fragment):
    for b in all_backends:
        with pytest.raises(ValueError, match=fragment):
            training_of(b).fit(**dict(SMALL, **kwargs))


def test_cli_train_reports_a_missing_backend_option(capsys):
    assert cli.main(["train", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert f"expected --backend {'|'.join(registry.BACKENDS)}, a comma list or all (or --resume DIR), got none" in err


SEVERAL_DEVICES = """
import json, os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + sys.argv[1]
os.environ["JAX_PLATFORMS"] = "cpu"
import jax
from nin_jax import training as tr
model = tr.build_model("auto", seed=0, init="kaiming", image_size={size})
rows = tr.fit(model, epochs=1, device="auto", image_size={size}, batch_size=16, limit_train=48, limit_val=32,
              init="kaiming", progress=False)
print(json.dumps(dict(devices=len(jax.devices()), device=rows[0]["device"],
                      metrics=[rows[0][k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")])))
"""


def test_jax_trains_the_same_on_a_machine_with_several_devices(all_backends, fashion_mnist):
    """What a machine with several GPUs looks like to JAX, made on the CPU (XLA's forced host device count): one
    process trains on the first device and ends as it does where there is one."""
    import subprocess
    import sys

    from conftest import INSTALLED_PRELUDE, REPO

    found = []
    for count in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", INSTALLED_PRELUDE + SEVERAL_DEVICES.format(size=SIZE), count],
                              capture_output=True, text=True, timeout=600, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        found.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert [f["devices"] for f in found] == [1, 2]
    assert found[0]["metrics"] == found[1]["metrics"] and found[0]["device"] == found[1]["device"]


def test_gpu_tests_fail_instead_of_skipping_where_a_gpu_is_required(tmp_path):
    """NIN_REQUIRE_GPU=1 (a GPU machine's run) turns a GPU test's skip into a failure that says why; without it
    the same test is skipped with its reason."""
    import subprocess
    import sys

    from conftest import REPO

    test = "tests/test_training.py::test_few_steps_write_metrics_plot_and_checkpoint[torch-gpu]"
    outcomes = {}
    for required in ("0", "1"):
        env = dict(os.environ, NIN_REQUIRE_GPU=required, CUDA_VISIBLE_DEVICES="")
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                               "-rsE", test], capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
        outcomes[required] = (proc.returncode, proc.stdout)
    assert outcomes["0"][0] == 0 and "1 skipped" in outcomes["0"][1] and "sees no GPU" in outcomes["0"][1]
    assert outcomes["1"][0] == 1 and "1 error" in outcomes["1"][1]
    assert "NIN_REQUIRE_GPU=1 but this GPU test was skipped" in outcomes["1"][1] and "sees no GPU" in outcomes["1"][1]
