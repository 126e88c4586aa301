"""Bad input and faults: one-line errors (exit 2, no traceback), nothing wrong ever saved as good."""
import errno
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from nin_common import cli
from nin_common.arch import weights as W
from nin_common.engine import checkpoint, data, registry, runs, training
from nin_common.util import files
from conftest import to_layout
from conftest import training_of as impl
from test_training import SMALL, SIZE, npz_weights, poison

TINY = dict(SMALL, batch_size=16, limit_train=16, limit_val=16)
TINY_CLI = ["--image-size", str(SIZE), "--batch-size", "16", "--limit-train", "16", "--limit-val", "16",
            "--init", "kaiming", "--device", "cpu", "--no-progress"]


def strict(text):
    """Parse JSON as a strict parser does: NaN and Infinity are not JSON."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def one_line_error(capsys, argv, *fragments):
    """``nin argv`` exits 2 with one line on stderr, no traceback, naming each fragment."""
    capsys.readouterr()
    assert cli.main(argv) == 2, argv
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("nin train: no --out given")]
    assert len(lines) == 1 and lines[0].startswith(f"nin {argv[0]}: error: "), err
    assert "Traceback" not in err and "weights_only" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def tree(folder):
    """Every file under ``folder`` with its bytes (to show nothing changed)."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


_RUNS = {}


@pytest.fixture
def tiny_run(backend, tmp_path_factory):
    """A one-epoch run of ``backend`` (made once per backend); tests copy it before damaging it."""
    if backend.BACKEND not in _RUNS:
        folder = str(tmp_path_factory.mktemp(f"run-{backend.BACKEND}"))
        impl(backend).fit(epochs=1, device="cpu", precision="fp32", out=folder, **TINY)
        _RUNS[backend.BACKEND] = folder
    return _RUNS[backend.BACKEND]


def copy_run(run, tmp_path):
    dst = str(tmp_path / "run")
    shutil.copytree(run, dst)
    return dst


# ---------------------------------------------------------------- 1. non-finite figures end the run

def test_non_finite_validation_ends_the_run_and_keeps_the_last_finite_epoch(backend, tiny_run, tmp_path,
                                                                            monkeypatch):
    run = copy_run(tiny_run, tmp_path)
    good = npz_weights(run)
    tr, train_step = impl(backend), impl(backend).Trainer.train_step

    def blow_up_after_the_last_step(self, images, labels, image_size):
        out = train_step(self, images, labels, image_size)  # the epoch's only step: its loss is finite
        poison(backend, self.model)  # ... but the weights it leaves give NaN in validation
        return out

    monkeypatch.setattr(tr.Trainer, "train_step", blow_up_after_the_last_step)
    with pytest.raises(training.NonFiniteLoss, match=r"epoch 2 ended with val_loss nan.*the last good checkpoint "
                                                     r"\(epoch 1\) stays"):
        tr.fit(epochs=2, device="cpu", precision="fp32", resume=run, **TINY)
    state = strict((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and all(math.isfinite(r["val_loss"]) for r in state["rows"])
    assert [strict(line)["epoch"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1]
    assert max(np.abs(npz_weights(run)[k] - good[k]).max() for k in good) == 0


def test_json_the_project_writes_is_strict(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        files.write_json(path, {"val_loss": float("nan")})
    assert not path.exists() and os.listdir(tmp_path) == []
    with pytest.raises(ValueError):
        runs.write_metrics(str(tmp_path), [{"epoch": 1, "val_loss": float("inf")}], "t")
    assert not (tmp_path / "metrics.jsonl").exists()
    (tmp_path / "nan.json").write_text('{"a": NaN}')
    with pytest.raises(ValueError, match="nan.json to be a JSON file.*NaN"):
        files.read_json(tmp_path / "nan.json")


# ---------------------------------------------------------------- 2. precision is fixed on resume

def test_precision_change_on_resume_is_refused(backend, tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    with pytest.raises(ValueError, match=r"precision='auto' \(the run has 'fp32'\)"):
        impl(backend).fit(epochs=2, device="cpu", precision="auto", resume=run, **TINY)
    other = "bf16" if backend.BACKEND != "mxnet" else "auto"
    one_line_error(capsys, ["train", "--resume", run, "--epochs", "2", "--precision", other, "--no-progress"],
                   f"precision='{other}' (the run has 'fp32')")


# ---------------------------------------------------------------- 3. one-line errors, exit 2

def test_unreadable_data_file_is_one_line(backend, tmp_path, monkeypatch, capsys):
    folder = data.locate(download_to_cache=False)
    denied = os.path.join(folder, "train-images-idx3-ubyte.gz")

    def no_permission(path, *args, **kwargs):
        if os.fspath(path) == denied:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return open(path, *args, **kwargs)

    data.clear_memo()
    monkeypatch.setattr(data, "open", no_permission, raising=False)
    one_line_error(capsys, ["train", "--backend", backend.BACKEND, "--data-dir", folder, "--epochs", "1", *TINY_CLI],
                   denied, "cannot be read: permission denied")
    data.clear_memo()


@pytest.mark.parametrize("desc,fragment", [
    ("[1, 2]", "to hold a JSON object with keys backend, model, format, sha256, got a list"),
    ({"backend": "torch", "model": {"image_size": 67}, "format": "nin-native-1", "colour": 1}, "unknown 'colour'"),
    ({"model": {"image_size": 67}, "format": "nin-native-1"}, "got no 'backend'"),
    ({"backend": "torch", "model": {"image_size": 67, "depth": 3}, "format": "nin-native-1"}, "unknown 'depth'"),
    ({"backend": "torch", "model": {"image_size": 10}, "format": "nin-native-1"}, "image_size to be an integer >= 67"),
    ("{not json", "to be a model description (JSON), got one that cannot be read as JSON"),
])
def test_bad_description_is_one_line(backend, tmp_path, capsys, desc, fragment):
    path = str(tmp_path / ("m" + registry.info(backend.BACKEND).native_suffix))
    backend.save_native(backend.NiN(image_size=SIZE), path)
    with open(path + ".json", "w") as f:
        f.write(desc if isinstance(desc, str) else json.dumps(desc))
    one_line_error(capsys, ["convert", path, "--to", "npz", "--out", str(tmp_path / "x.npz")], path + ".json",
                   fragment)
    assert not (tmp_path / "x.npz").exists()


def test_state_file_without_settings_and_truncated_optimizer(backend, tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    state_path = os.path.join(run, "checkpoint", "state.json")
    state = json.load(open(state_path))
    with open(state_path, "w") as f:
        json.dump({k: v for k, v in state.items() if k != "settings"}, f)
    one_line_error(capsys, ["train", "--resume", run, "--epochs", "2", "--no-progress"], state_path,
                   "'settings' (missing)")
    one_line_error(capsys, ["evaluate", "--checkpoint", run, "--no-progress"], state_path)
    # a truncated optimizer state (its sha256 no longer matches; without one, the framework's reader says so)
    run = copy_run(tiny_run, tmp_path / "b")
    ckpt = os.path.join(run, "checkpoint")
    optimizer = [n for n in os.listdir(ckpt) if n.startswith("optimizer")][0]
    with open(os.path.join(ckpt, optimizer), "r+b") as f:
        f.truncate(os.path.getsize(f.name) // 2)
    one_line_error(capsys, ["train", "--resume", run, "--epochs", "2", "--no-progress"], optimizer)
    state = json.load(open(os.path.join(ckpt, "state.json")))
    state.pop("files")
    files.write_json(os.path.join(ckpt, "state.json"), state)
    one_line_error(capsys, ["train", "--resume", run, "--epochs", "2", "--no-progress"], ckpt)
    # another backend evaluates the run through model.npz: truncated, it is one line naming it
    with open(os.path.join(ckpt, "model.npz"), "r+b") as f:
        f.truncate(os.path.getsize(f.name) // 3)
    other = [b for b in registry.BACKENDS if b != backend.BACKEND][0]
    one_line_error(capsys, ["evaluate", "--checkpoint", run, "--backend", other, "--no-progress"],
                   os.path.join(ckpt, "model.npz"), "numpy cannot read")


def test_convert_to_npz_is_evaluated_and_bad_image_sizes_are_one_line(backend, tiny_run, tmp_path, capsys):
    native = os.path.join(tiny_run, "checkpoint", checkpoint.native_name(backend.BACKEND))
    out = str(tmp_path / "x.npz")
    assert cli.main(["convert", native, "--to", "npz", "--out", out]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", out, "--limit", "16", "--json", "--device", "cpu",
                     "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["backend"], result["n"], result["image_size"]) == (backend.BACKEND, 16, SIZE)
    for size in ("10", "66"):
        one_line_error(capsys, ["evaluate", "--checkpoint", tiny_run, "--image-size", size, "--limit", "16",
                                "--device", "cpu", "--no-progress"], f"image size {size}", "at least 67x67")
    os.mkdir(tmp_path / "dir.pt")
    one_line_error(capsys, ["convert", native, "--to", "torch", "--out", str(tmp_path / "dir.pt")],
                   "expected a file path to write, got the folder", "dir.pt")


def no_training(*args, **kwargs):
    raise AssertionError("the data was loaded: --out was not checked before training")


@pytest.mark.parametrize("fault", ["file", "read-only", "no space on write", "full disk"])
def test_train_out_is_checked_before_training(backend, tmp_path, monkeypatch, capsys, fault):
    out = tmp_path / "out"
    if fault == "file":
        out.write_text("x")
        fragment = "expected --out to be a folder, got the file"
    elif fault == "read-only":  # what a read-only folder answers (the tests may run as root, who may write)
        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied", str(out))
        monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
        fragment = "to be a writable folder, got permission denied"
    elif fault == "no space on write":
        def full(fd, data):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(files.os, "write", full)
        fragment = "to be a writable folder, got no space left on device"
    else:
        real = os.statvfs

        def nearly_full(path):
            st = real(path)
            return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, 1, 1, st.f_files, st.f_ffree,
                                      st.f_favail, st.f_flag, st.f_namemax))
        monkeypatch.setattr(files.os, "statvfs", nearly_full)
        fragment = "MiB free for its checkpoints, got 0.0 MiB"
    monkeypatch.setattr(data, "load", no_training)
    one_line_error(capsys, ["train", "--backend", backend.BACKEND, "--epochs", "1", "--out", str(out), *TINY_CLI],
                   str(out), fragment)


def test_framework_failing_with_oserror_is_unavailable(monkeypatch, capsys):
    real = registry.importlib.import_module
    name = registry.BACKENDS[0]

    def broken(module, *args):
        if module.split(".")[0] == registry.info(name).package:
            raise OSError("libtorch_cpu.so: cannot open shared object file")
        return real(module, *args)

    monkeypatch.setattr(registry.importlib, "import_module", broken)
    with pytest.raises(registry.BackendUnavailable, match="cannot open shared object file"):
        registry.load(name)
    one_line_error(capsys, ["train", "--backend", name, "--epochs", "1", "--no-progress"], "fails to import")


# ---------------------------------------------------------------- 4. an explicit data folder is required

@pytest.mark.parametrize("fault", ["missing", "unreadable", "folder for a file", "incomplete"])
def test_explicit_data_dir_that_cannot_serve_is_an_error(tmp_path, monkeypatch, fault):
    system = data.locate(download_to_cache=False)  # a source that would serve, were it tried
    mine = tmp_path / "mine"
    if fault != "missing":
        shutil.copytree(system, mine)
    if fault == "unreadable":  # what os.access says of a folder this user may not read (root reads all)
        real = os.access
        monkeypatch.setattr(data.os, "access", lambda p, mode, **kw: False if p == str(mine) else real(p, mode))
    elif fault == "folder for a file":
        name = [n for n in os.listdir(mine) if n.startswith("train-images")][0]
        os.remove(mine / name)
        os.mkdir(mine / name)
    elif fault == "incomplete":
        os.remove(mine / [n for n in os.listdir(mine) if n.startswith("t10k-labels")][0])
    fragment = {"missing": "no such folder", "unreadable": "readable folder", "folder for a file": "got a folder",
                "incomplete": "got no t10k-labels-idx1-ubyte"}[fault]
    for how in ("argument", "environment"):
        kwargs = dict(system_dir=system, download_to_cache=False)
        if how == "environment":
            monkeypatch.setenv("NIN_DATA_DIR", str(mine))
        with pytest.raises((data.DataUnavailable, data.DataError), match=fragment) as err:
            data.locate(str(mine) if how == "argument" else None, **kwargs)
        assert str(mine) in str(err.value)
        monkeypatch.delenv("NIN_DATA_DIR", raising=False)


# ---------------------------------------------------------------- 5. non-finite numbers

def test_non_finite_inputs_and_weights_same_error_everywhere(backend, tmp_path, capsys):
    info = registry.info(backend.BACKEND)
    model = backend.NiN(seed=0, image_size=SIZE)
    x = np.zeros((2, 1, SIZE, SIZE), np.float32)
    x[1, 0, 5, 5] = np.nan
    with pytest.raises(ValueError, match=r"expected finite input values, got 1 NaN or infinite value\(s\)"):
        backend.predict(model, to_layout(x, info.data_format))
    before = backend.export_weights(model)
    for bad in (np.nan, np.inf, 1e300):
        w = {k: v.astype(np.float64) for k, v in before.items()}
        w["block1.conv0.weight"][0, 0, 0, 0] = bad
        w["dense0.bias" if "dense0.bias" in w else "block3.conv2.bias"][0] = -bad
        with pytest.raises(ValueError, match=r"block1\.conv0\.weight: expected finite float32 values, got 1 NaN "
                                             r"or infinite.*block3\.conv2\.bias"):
            backend.import_weights(model, w)
    after = backend.export_weights(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # convert refuses them too, with one line
    w = dict(before)
    w["block0.conv0.bias"] = np.full_like(w["block0.conv0.bias"], np.inf)
    W.save_npz(str(tmp_path / "inf.npz"), w, model=files.dumps(model.config.kwargs), backend=backend.BACKEND)
    one_line_error(capsys, ["convert", str(tmp_path / "inf.npz"), "--to", backend.BACKEND,
                            "--out", str(tmp_path / ("y" + info.native_suffix))], "inf.npz", "block0.conv0.bias")
    assert os.listdir(tmp_path) == ["inf.npz"]


# ---------------------------------------------------------------- 6. labels

def test_labels_out_of_range_same_error_everywhere(backend):
    split = data.load("train", limit=4)
    trainer = impl(backend).Trainer(backend.NiN(seed=0, init="kaiming", image_size=SIZE), 0.05, "cpu", "fp32")
    before = backend.export_weights(trainer.model)
    for labels in ([0, 1, 2, 10], [-1, 0, 1, 2], [1000, 0, 0, 0]):
        for step in (trainer.train_step, trainer.eval_step):
            with pytest.raises(ValueError, match=r"expected class labels in 0\.\.9, got"):
                step(split.images, np.array(labels), SIZE)
    with pytest.raises(ValueError, match=r"expected 4 integer class labels \(shape \(4,\)\)"):
        trainer.train_step(split.images, np.array([0.5, 1, 2, 3]), SIZE)
    with pytest.raises(ValueError, match="expected a uint8 batch of images"):
        trainer.train_step(split.images.astype(np.float32), split.labels, SIZE)
    after = backend.export_weights(trainer.model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


# ---------------------------------------------------------------- 7. smaller ones

def test_killed_download_leftovers_are_removed(tmp_path, monkeypatch):
    system = data.locate(download_to_cache=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-home"))
    monkeypatch.delenv("NIN_DATA_DIR", raising=False)
    cache = data.cache_dir()
    os.makedirs(cache)
    for name in os.listdir(system):
        if not name.startswith("t10k-labels"):
            shutil.copy(os.path.join(system, name), cache)
    (tmp_path / "cache-home" / "nin" / "fashion-mnist" / ".tmp-killed.gz").write_bytes(b"\x1f\x8b half")
    assert data.locate(None, system_dir=str(tmp_path / "none"), mirrors=["file://" + system],
                       progress=False) == cache
    assert sorted(os.listdir(cache)) == sorted(n + ".gz" for pair in data.FILES.values() for n in pair)


def test_two_runs_cannot_share_an_out_folder(backend, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    monkeypatch.setattr(data, "load", no_training)
    with files.folder_lock(out, wait=False):  # what a run in another process holds while it trains
        with pytest.raises(ValueError, match="expected .*out to be free, got a folder another process is writing"):
            impl(backend).fit(epochs=1, device="cpu", out=out, **TINY)


def test_output_files_respect_the_umask(backend, tmp_path):
    old = os.umask(0o027)
    try:
        path = str(tmp_path / ("m" + registry.info(backend.BACKEND).native_suffix))
        backend.save_native(backend.NiN(image_size=SIZE), path)
        W.save_npz(str(tmp_path / "w.npz"), {"a": np.zeros(2)})
        for name in os.listdir(tmp_path):
            assert os.stat(tmp_path / name).st_mode & 0o777 == 0o640, name
    finally:
        os.umask(old)


def native_tensor(backend, x):
    """``x`` as a tensor of the backend's own framework (what its model is called with)."""
    module = registry.info(backend.BACKEND).module
    if module == "torch":
        import torch
        return torch.from_numpy(x)
    if module == "mxnet":
        return backend.model.array(x)
    if module == "tensorflow":
        import tensorflow as tf
        return tf.constant(x)
    if module == "jax":
        import jax.numpy as jnp
        return jnp.asarray(x)
    raise AssertionError(f"no tensor of {module} known to this test: add it")


def test_direct_model_call_is_checked(backend):
    model = backend.NiN(image_size=SIZE)
    with pytest.raises(ValueError, match=r"expected a 4-D .* got a 3-D array of shape \(1, 67, 67\)"):
        model(native_tensor(backend, np.zeros((1, SIZE, SIZE), np.float32)))
    with pytest.raises(ValueError, match="expected images of at least 67x67"):
        model(native_tensor(backend, to_layout(np.zeros((1, 1, 40, 40), np.float32),
                                               registry.info(backend.BACKEND).data_format)))


# ---------------------------------------------------------------- fuzz: damaged files

def damages(raw):
    """(name, damaged bytes): empty, truncated at several offsets, a flipped byte, another container."""
    n = len(raw)
    out = [("empty", b"")]
    out += [(f"truncated at {f}", raw[:int(n * f)]) for f in (0.01, 0.5, 0.99)]
    out += [(f"flipped at {f}", raw[:int(n * f)] + bytes([raw[int(n * f)] ^ 0xFF]) + raw[int(n * f) + 1:])
            for f in (0.02, 0.6)]
    out.append(("another container", b"PK\x05\x06" + b"\0" * 18 if not raw.startswith(b"PK") else b"\x89HDF\r\n"))
    return out


def test_damaged_checkpoints_and_weights_are_one_line(backend, tiny_run, tmp_path, capsys):
    """Every file of a run (and standalone weights, whose framework's own reader then answers), damaged in
    each way: resume, evaluate and convert exit 2 with one line naming the file, and change nothing."""
    ckpt = os.path.join(tiny_run, "checkpoint")
    native = checkpoint.native_name(backend.BACKEND)
    for name in sorted(os.listdir(ckpt)):
        raw = open(os.path.join(ckpt, name), "rb").read()
        for how, bad in damages(raw):
            run = str(tmp_path / "run")
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(tiny_run, run)
            with open(os.path.join(run, "checkpoint", name), "wb") as f:
                f.write(bad)
            before = tree(run)
            one_line_error(capsys, ["train", "--resume", run, "--epochs", "2", "--no-progress"], name)
            one_line_error(capsys, ["evaluate", "--checkpoint", run, "--no-progress"], name)
            assert tree(run) == before, (name, how)
    # standalone files without a recorded sha256: the framework's (or numpy's) reader answers, in one line
    # (a flipped byte in weight data passes some frameworks' readers: the recorded sha256 is what finds it)
    for name in (native, "model.npz"):
        source = os.path.join(ckpt, name)
        raw = open(source, "rb").read()
        for how, bad in damages(raw):
            if how.startswith("flipped") and name == native:
                continue
            path = str(tmp_path / name)
            with open(path, "wb") as f:
                f.write(bad)
            if name == native:
                desc = json.load(open(source + ".json"))
                desc.pop("sha256")
                with open(path + ".json", "w") as f:
                    json.dump(desc, f)
            one_line_error(capsys, ["convert", path, "--to", "npz", "--out", str(tmp_path / "out.npz")], path)
            assert not (tmp_path / "out.npz").exists(), (name, how)


def test_damaged_data_files_are_one_line(tmp_path, monkeypatch, capsys):
    system = data.locate(download_to_cache=False)
    name = [n for n in os.listdir(system) if n.startswith("t10k-labels")][0]
    raw = open(os.path.join(system, name), "rb").read()
    mine = tmp_path / "mine"
    shutil.copytree(system, mine)
    real_load = data.load

    def test_split_first(split, *args, **kwargs):  # read the damaged split first: no training in between
        return real_load("test", *args, **kwargs)

    monkeypatch.setattr(data, "load", test_split_first)
    for how, bad in damages(raw) + [("a folder", None)]:
        path = mine / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        if bad is None:
            os.mkdir(path)
        else:
            path.write_bytes(bad)
        data.clear_memo()
        one_line_error(capsys, ["train", "--backend", registry.BACKENDS[0], "--data-dir", str(mine), "--epochs", "1",
                                *TINY_CLI], str(path))


# ---------------------------------------------------------------- kill -9 and resume

KILLER = """
import os, signal, sys
moment = sys.argv[1]
real_replace, seen = os.replace, []

def replace(src, dst):  # the checkpoint of epoch 2 is where the kill lands (epoch 1's has no old one to swap)
    name = os.path.basename(dst)
    event = {"checkpoint.old": "inside the swap", "checkpoint": "after the swap"}.get(name)
    if name == "model.npz" and os.path.basename(os.path.dirname(dst)) == "checkpoint.new":
        event = "writing the weights"
    if event == moment:
        seen.append(dst)
        if len(seen) == (1 if moment == "inside the swap" else 2):
            if moment != "writing the weights":
                real_replace(src, dst)  # then killed between the swap's two renames, or just after them
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)

os.replace = replace
from nin_common.engine.trainer import Trainer
real_epoch = Trainer.train_epoch

def train_epoch(trainer, split, config, epoch, *args):
    if moment == "mid-epoch" and epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_epoch(trainer, split, config, epoch, *args)

Trainer.train_epoch = train_epoch
from nin_common import cli
sys.exit(cli.main(sys.argv[2:]))
"""


def final_weights(run):
    return W.load_npz(os.path.join(checkpoint.find_checkpoint(run), "model.npz"))[0]


def test_kill_and_resume_ends_bit_identical(tmp_path):
    """``kill -9`` at several moments (mid-epoch, writing the checkpoint, inside its two-rename swap, after
    it), then resume: the final weights equal an uninterrupted run's, bit for bit."""
    backend = registry.load(registry.BACKENDS[0])
    settings = dict(TINY, epochs=2)
    straight = str(tmp_path / "straight")
    impl(backend).fit(device="cpu", precision="fp32", out=straight, **settings)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    for moment in ("mid-epoch", "writing the weights", "inside the swap", "after the swap"):
        run = str(tmp_path / moment.replace(" ", "-"))
        proc = subprocess.run([sys.executable, "-c", KILLER, moment, "train", "--backend", backend.BACKEND,
                               "--epochs", "2", "--precision", "fp32", "--out", run, *TINY_CLI],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == -9, (moment, proc.stderr[-2000:])
        impl(backend).fit(device="cpu", precision="fp32", resume=run, **settings)
        final, expected = final_weights(run), final_weights(straight)
        assert max(float(np.abs(final[k] - expected[k]).max()) for k in expected) == 0, moment
        assert not [p for p in os.listdir(run) if p.startswith(files.TMP_PREFIX)]
