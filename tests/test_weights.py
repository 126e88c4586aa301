"""Canonical weights: export/import, checks, .npz files, same seed, and `nin convert` between backends."""
import json

import numpy as np
import pytest

from nin_common import cli
from nin_common.arch import shapes
from nin_common.arch import spec as S
from nin_common.arch.variants import build_spec
from nin_common.arch.weights import initial_weights, load_npz, save_npz
from nin_common.engine import registry
from nin_common.engine.checkpoint import native_name
from conftest import DENSE_SIZE, to_layout


def images(n, c, size, data_format, seed=0):
    return to_layout(np.random.default_rng(seed).random((n, c, size, size), dtype=np.float32), data_format)


def assert_same_weights(a, b):
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype == np.float32, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("kwargs", [dict(), dict(in_channels=3, num_classes=7, image_size=96)], ids=["chapter", "3ch"])
def test_export_import_round_trip(backend, kwargs):
    source = backend.NiN(seed=1, init="kaiming", **kwargs)
    exported = backend.export_weights(source)
    spec = source.spec
    assert {k: v.shape for k, v in exported.items()} == shapes.param_shapes(spec, source.image_size)
    target = backend.NiN(seed=2, **kwargs)
    backend.import_weights(target, exported)
    assert_same_weights(backend.export_weights(target), exported)
    x = images(2, spec.in_channels, 96, backend.DATA_FORMAT)
    np.testing.assert_array_equal(backend.predict(target, x), backend.predict(source, x))


def test_dense_head_round_trip(backend, dense_variant):
    source = backend.NiN(seed=1, init="kaiming", **dense_variant)
    exported = backend.export_weights(source)
    assert exported["dense0.weight"].shape == (20, 12 * 3 * 3)  # inputs counted in C, H, W order
    assert exported["dense1.weight"].shape == (10, 20)
    target = backend.NiN(seed=2, **dense_variant)
    backend.import_weights(target, exported)
    assert_same_weights(backend.export_weights(target), exported)


def corrupted(weights):
    """Missing, unexpected and mis-shaped arrays, with new values for every other array."""
    bad = {k: v + 1.0 for k, v in weights.items()}
    del bad["block0.conv0.bias"]
    bad["block9.conv0.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    bad["block3.conv2.weight"] = bad["block3.conv2.weight"][:, :5]  # the last layer: all others would fit
    return bad


def test_import_rejects_bad_weights_and_changes_nothing(backend):
    model = backend.NiN(seed=0)
    before = backend.export_weights(model)
    x = images(1, 1, 72, backend.DATA_FORMAT)
    logits = backend.predict(model, x)
    with pytest.raises(ValueError) as err:
        backend.import_weights(model, corrupted(before))
    message = str(err.value)
    assert "missing: block0.conv0.bias" in message
    assert "unexpected: block9.conv0.weight" in message
    assert "block3.conv2.weight: expected shape (10, 10, 1, 1), got (10, 5, 1, 1)" in message
    assert_same_weights(backend.export_weights(model), before)
    np.testing.assert_array_equal(backend.predict(model, x), logits)


def test_import_rejects_non_numeric(backend):
    model = backend.NiN(seed=0)
    weights = backend.export_weights(model)
    weights["block1.conv1.bias"] = weights["block1.conv1.bias"].astype(str)
    with pytest.raises(ValueError, match="block1.conv1.bias: expected a real numeric array, got dtype <U"):
        backend.import_weights(model, weights)


@pytest.mark.parametrize("init", ["xavier", "kaiming", "kaiming-alive"])
@pytest.mark.parametrize("seed", [0, 7])
def test_same_seed_bit_identical_in_every_backend(all_backends, seed, init):
    kwargs = dict(seed=seed, init=init, in_channels=3, num_classes=5)
    expected = initial_weights(S.chapter(5, 3), seed, init)
    for mod in all_backends:
        assert_same_weights(mod.export_weights(mod.NiN(**kwargs)), expected)
    other = initial_weights(S.chapter(5, 3), seed + 1, init)
    assert not np.array_equal(other["block0.conv0.weight"], expected["block0.conv0.weight"])


def test_npz_round_trip(tmp_path):
    weights = initial_weights(S.chapter(), 3, "kaiming")
    path = tmp_path / "w.npz"
    save_npz(path, weights, model=json.dumps({"variant": "chapter"}), step=12)
    loaded, meta = load_npz(path)
    assert_same_weights(loaded, weights)
    assert meta == {"model": '{"variant": "chapter"}', "step": 12}


UNPICKLED = []


class Trap:
    """Records it if anything ever unpickles it."""

    def __reduce__(self):
        return (UNPICKLED.append, ("unpickled",))


def test_npz_never_unpickles(tmp_path):
    path = tmp_path / "trap.npz"
    weights = initial_weights(S.chapter(), 0)
    weights["block0.conv0.bias"] = np.array([Trap()] * 96, dtype=object)
    np.savez(path, **weights)
    with pytest.raises(ValueError, match="Object arrays cannot be loaded.*nin never unpickles"):
        load_npz(path)
    assert UNPICKLED == []
    assert cli.main(["convert", str(path), "--to", "npz", "--out", str(tmp_path / "out.npz")]) == 2
    assert UNPICKLED == [] and not (tmp_path / "out.npz").exists()


# --- nin convert: the target framework's own loader reads the result ------------------------------------------

def load_plainly(name, path, kwargs):
    """Read a native checkpoint with the framework's plain API (not nin's load_native)."""
    from nin_common.engine import registry
    mod = registry.load(name)
    model = mod.NiN(**kwargs)
    if name == "torch":
        import torch
        model.load_state_dict(torch.load(path, weights_only=True))
    elif name == "mxnet":
        model.load_parameters(str(path))
    elif name == "jax":
        from flax import nnx, serialization
        state = nnx.state(model, nnx.Param)
        state.replace_by_pure_dict(serialization.from_bytes(state.to_pure_dict(), path.read_bytes()))
        nnx.update(model, state)
    else:
        model.load_weights(str(path))
    return mod, model


def convert_chain(names):
    """Every backend of ``names`` in turn, the canonical .npz, and back to the first."""
    return ([(name, native_name(name)) for name in names] + [("npz", "model.npz")]
            + [(names[0], "back" + registry.info(names[0]).native_suffix)])


@pytest.mark.parametrize("variant", ["chapter", "dense_head"])
def test_convert_round_trip_through_every_backend(all_backends, tmp_path, dense_variant, variant):
    torch_mod = all_backends[0]
    chain = convert_chain([b.BACKEND for b in all_backends])
    kwargs = dict(variant=variant, seed=5, init="kaiming", image_size=DENSE_SIZE if variant == "dense_head" else 96)
    start = torch_mod.NiN(**kwargs)
    expected = torch_mod.export_weights(start)
    path = tmp_path / chain[0][1]
    torch_mod.save_native(start, path)
    x = images(2, 1, kwargs["image_size"], "NCHW")
    for target, name in chain[1:]:
        out = tmp_path / name
        assert cli.main(["convert", str(path), "--to", target, "--out", str(out)]) == 0
        if target == "npz":
            weights, meta = load_npz(out)
            assert json.loads(meta["model"]) == start.config.kwargs
        else:
            mod, model = load_plainly(target, out, start.config.kwargs)
            weights = mod.export_weights(model)
            np.testing.assert_allclose(mod.predict(model, to_layout(x, mod.DATA_FORMAT)), torch_mod.predict(start, x),
                                       rtol=0, atol=1e-5 * np.abs(torch_mod.predict(start, x)).max())
            assert json.load(open(f"{out}.json"))["backend"] == target
        assert_same_weights(weights, expected)
        path = out


def test_convert_errors_exit_2(backend, tmp_path, capsys):
    missing = tmp_path / "nothing.pt"
    assert cli.main(["convert", str(missing), "--to", "tf", "--out", str(tmp_path / "a.weights.h5")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    model = backend.NiN(seed=0)
    path = tmp_path / f"m{registry.info(backend.BACKEND).native_suffix}"
    backend.save_native(model, path)
    assert cli.main(["convert", str(path), "--to", "tf", "--out", str(tmp_path / "a.h5")]) == 2
    assert "expected --out to end with .weights.h5 for --to tf" in capsys.readouterr().err
    assert not (tmp_path / "a.h5").exists()
    assert cli.main(["convert", str(tmp_path / "m.txt"), "--to", "torch", "--out", str(tmp_path / "b.pt")]) == 2
    assert "expected a checkpoint ending in one of" in capsys.readouterr().err


def _dead_channels_of_the_last_block(variant: str, init: str, seed: int, images: np.ndarray) -> int:
    """How many channels of the block the classes are read from are <= 0 on every image at the start."""
    from nin_common.arch.reference import layer_outputs
    spec = build_spec(variant)
    at = max(i for i, layer in enumerate(spec.layers) if isinstance(layer, S.Block))
    out = layer_outputs(spec, initial_weights(spec, seed, init, 67), images)[at]
    return int((out.max(axis=(0, 2, 3)) <= 0).sum())


def _test_images_at_67(fashion_mnist, n=64):
    from nin_common.engine import data
    test = data.load("test", fashion_mnist, n, progress=False)
    x = test.images[:, None].astype(np.float64) / 255
    pick = np.linspace(0, 27, 67).round().astype(int)
    return x[:, :, pick][:, :, :, pick]


def test_kaiming_alive_all_starts_every_last_block_alive(fashion_mnist):
    """Where kaiming-alive leaves channels dead (gradual narrows 384 -> 192 -> 96 -> 10 with no square convolution
    to start as the identity; fc-head's and fc-head-wide's last block feeds a fully connected layer), its
    generalisation starts none dead; on the chapter's shapes the two are the same weights."""
    x = _test_images_at_67(fashion_mnist)
    assert _dead_channels_of_the_last_block("gradual", "kaiming-alive", 0, x) >= 2
    assert _dead_channels_of_the_last_block("fc-head-wide", "kaiming-alive", 0, x) >= 50
    for variant, most in (("gradual", 0), ("fc-head", 0), ("fc-head-wide", 3)):  # 384 channels: 1% on 64 images
        for seed in range(3):
            assert _dead_channels_of_the_last_block(variant, "kaiming-alive-all", seed, x) <= most, (variant, seed)
    for variant in ("chapter", "1x1-1", "1x1-3", "3x3", "1x1-0"):
        spec = build_spec(variant)
        same, alive = (initial_weights(spec, 2, init, 67) for init in ("kaiming-alive-all", "kaiming-alive"))
        assert all(np.array_equal(same[k], alive[k]) for k in alive), variant
    gradual = initial_weights(build_spec("gradual"), 0, "kaiming-alive-all", 67)
    assert np.array_equal(gradual["block3.conv1.weight"][:, :, 0, 0], np.kron(np.eye(192 // 2), [[0.5, 0.5]]))
    assert np.all(gradual["block3.conv1.weight"] >= 0) and np.all(gradual["block3.conv2.weight"] >= 0)


def _dead_classes(init: str, seed: int, images: np.ndarray) -> int:
    """How many class channels are <= 0 on every image at the start (no gradient: never predicted)."""
    from nin_common.arch.reference import forward
    logits = forward(S.chapter(), initial_weights(S.chapter(), seed, init, 67), images)
    return int((logits.max(axis=0) <= 0).sum())


def test_kaiming_alive_starts_no_class_dead(fashion_mnist):
    """The quick recipe's init: measured on the seed whose plain He-normal start has 6 of 10 classes dead
    (quick recipe, seed 1: three of them never came back, test accuracy 0.66)."""
    from nin_common.engine import data
    test = data.load("test", fashion_mnist, 64, progress=False)
    x = test.images[:, None].astype(np.float64) / 255
    x = x[:, :, np.linspace(0, 27, 67).round().astype(int)][:, :, :, np.linspace(0, 27, 67).round().astype(int)]
    assert _dead_classes("kaiming", 1, x) >= 3
    for seed in range(4):
        assert _dead_classes("kaiming-alive", seed, x) == 0
    alive, plain = (initial_weights(S.chapter(), 1, init, 67) for init in ("kaiming-alive", "kaiming"))
    changed = sorted(k for k in plain if not np.array_equal(alive[k], plain[k]))
    assert changed == ["block3.conv0.bias", "block3.conv1.weight", "block3.conv2.weight"]
    assert np.all(alive["block3.conv0.bias"] == 1.0)
    assert np.array_equal(alive["block3.conv1.weight"][:, :, 0, 0], np.eye(10))
