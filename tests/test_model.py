"""Foundation: the chapter's model, shapes, parameter counts and input errors, in every backend."""
import subprocess
import sys

import numpy as np
import pytest

from nin_common.engine import registry
from nin_common.arch import shapes
from nin_common.arch.spec import chapter
from conftest import assert_reads_at_80, run_piped, run_python, shape_in, to_layout

CHAPTER_NAMES = {
    "torch": ["Sequential", "MaxPool2d", "Sequential", "MaxPool2d", "Sequential", "MaxPool2d", "Dropout",
              "Sequential", "AdaptiveAvgPool2d", "Flatten"],
    "mxnet": ["HybridSequential", "MaxPool2D", "HybridSequential", "MaxPool2D", "HybridSequential", "MaxPool2D",
              "Dropout", "HybridSequential", "GlobalAvgPool2D", "Flatten"],
    "tf": ["Sequential", "MaxPooling2D", "Sequential", "MaxPooling2D", "Sequential", "MaxPooling2D", "Dropout",
           "Sequential", "GlobalAveragePooling2D", "Flatten"],
    "jax": ["Sequential", "MaxPool2D", "Sequential", "MaxPool2D", "Sequential", "MaxPool2D", "Dropout",
            "Sequential", "GlobalAvgPool2D", "Flatten"],
}
CHAPTER_SHAPES_NCHW = [(1, 96, 54, 54), (1, 96, 26, 26), (1, 256, 26, 26), (1, 256, 12, 12), (1, 384, 12, 12),
                       (1, 384, 5, 5), (1, 384, 5, 5), (1, 10, 5, 5), (1, 10, 1, 1), (1, 10)]
CHAPTER_SHAPES_NHWC = [(1, 54, 54, 96), (1, 26, 26, 96), (1, 26, 26, 256), (1, 12, 12, 256), (1, 12, 12, 384),
                       (1, 5, 5, 384), (1, 5, 5, 384), (1, 5, 5, 10), (1, 10), (1, 10)]

# The chapter's code for each framework (its imports, then its shape table), verbatim but for the line that
# imported d2l, which imports NiN instead, where it stood.  Each runs in a fresh process with nin installed as
# the README installs it: the MXNet one starts with ``from mxnet import np, npx``, before nin_mxnet is imported
# (numpy 1.26 lacks numpy.bool, which MXNet 1.9.1 uses: the import hook of nin_common.util.runtime restores it).
SNIPPETS = {
    "torch": """import torch
from torch import nn
from nin_torch import NiN

model = NiN()
X = torch.randn(1, 1, 224, 224)
for layer in model.net:
    X = layer(X)
    print(layer.__class__.__name__,'output shape:\\t', X.shape)
""",
    "mxnet": """from mxnet import init, np, npx
from mxnet.gluon import nn
from nin_mxnet import NiN

npx.set_np()

model = NiN()
X = np.random.randn(1, 1, 224, 224)
for layer in model.net:
    X = layer(X)
    print(layer.__class__.__name__,'output shape:\\t', X.shape)
""",
    "tf": """import tensorflow as tf
from nin_tf import NiN

model = NiN()
X = tf.random.normal((1, 224, 224, 1))
for layer in model.net.layers:
    X = layer(X)
    print(layer.__class__.__name__,'output shape:\\t', X.shape)
""",
    "jax": """
import jax
from nin_jax import NiN
model = NiN()
X = jax.random.normal(jax.random.key(0), (1, 224, 224, 1))
for layer in model.net.layers:
    X = layer(X)
    print(layer.__class__.__name__,'output shape:\\t', X.shape)
""",
}


def test_chapter_snippet_prints_the_chapter_table(backend):
    res = run_python(SNIPPETS[backend.BACKEND])
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    expected = CHAPTER_SHAPES_NHWC if backend.DATA_FORMAT == "NHWC" else CHAPTER_SHAPES_NCHW
    assert len(lines) == 10, res.stdout
    for line, name, shape in zip(lines, CHAPTER_NAMES[backend.BACKEND], expected):
        printed_name, printed_shape = line.split(" output shape:\t ")
        assert printed_name == name
        digits = tuple(int(t) for t in printed_shape.replace("torch.Size", "").strip("()[] ").replace("[", "")
                       .replace("]", "").split(",") if t.strip())
        assert digits == shape


def test_chapter_snippets_in_the_chapters_order_in_one_process(all_backends):
    """The three, one after the other in one process, in the chapter's order (PyTorch, MXNet, TensorFlow; those
    installed)."""
    installed = {b.BACKEND for b in all_backends}
    names = [name for name in ("torch", "mxnet", "tf") if name in installed]
    res = run_python("\n".join(SNIPPETS[name] for name in names))
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(names) >= 2 and len(res.stdout.strip().splitlines()) == 10 * len(names)


def test_public_api_names(backend):
    assert backend.BACKEND in registry.BACKENDS
    assert backend.DATA_FORMAT == registry.info(backend.BACKEND).data_format
    for name in ("NiN", "nin_block", "layer_shapes", "predict", "num_params", "export_weights", "import_weights"):
        assert callable(getattr(backend, name)), name


def test_native_model_type(backend):
    model = backend.NiN()
    native = {"torch": "torch.nn.Module", "mxnet": "mxnet.gluon.HybridBlock", "tf": "keras.Model",
              "jax": "flax.nnx.Module"}[backend.BACKEND]
    module, cls = native.rsplit(".", 1)
    base = __import__(module, fromlist=[cls])
    assert isinstance(model, getattr(base, cls))
    assert len(list(model.net.layers if hasattr(model.net, "layers") else model.net)) == 10


@pytest.mark.parametrize("size,in_channels,num_classes", [(224, 1, 10), (96, 1, 10), (227, 3, 10), (300, 1, 7),
                                                          (67, 2, 100)])
def test_layer_shapes_match_analytic(backend, size, in_channels, num_classes):
    model = backend.NiN(num_classes=num_classes, in_channels=in_channels)
    input_shape = shape_in(backend.DATA_FORMAT, 2, in_channels, size)
    measured = backend.layer_shapes(model, input_shape)
    analytic = shapes.layer_shapes(model.spec, input_shape, backend.DATA_FORMAT)
    assert [s for _, s in measured] == [s for _, s in analytic]
    assert [n for n, _ in measured] == CHAPTER_NAMES[backend.BACKEND]


@pytest.mark.parametrize("in_channels,num_classes", [(1, 10), (3, 10), (1, 1000), (4, 2)])
def test_num_params_counted_by_framework(backend, in_channels, num_classes):
    model = backend.NiN(num_classes=num_classes, in_channels=in_channels)
    assert backend.num_params(model) == shapes.num_params(chapter(num_classes, in_channels))


def test_chapter_param_count():
    assert shapes.num_params(chapter()) == 1_992_166


def test_unknown_layer_kind_is_one_error():
    """Every table keyed by layer kind (each backend's builders, the reference, the ONNX graph) fails the same way
    on a kind it lacks."""
    from nin_common.arch import spec as S

    with pytest.raises(TypeError, match=r"^unknown layer Flatten\(\)$"):
        S.dispatch({S.Dropout: None}, S.Flatten())


def test_configure_still_sets_the_attributes_and_warns():
    from nin_common.arch.config import configure

    class Plain:
        pass

    model = Plain()
    with pytest.warns(DeprecationWarning, match="model_config"):
        config = configure(model, num_classes=7, in_channels=3)
    assert model.config is config and model.spec is config.spec and model.image_size == 224
    assert (model.lr, model.num_classes, model.in_channels) == (0.1, 7, 3)


def test_parameters_initialised_on_construction(backend):
    a = backend.export_weights(backend.NiN(seed=3))
    b = backend.export_weights(backend.NiN(seed=3))
    c = backend.export_weights(backend.NiN(seed=4))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["block0.conv0.weight"], c["block0.conv0.weight"])
    assert all(np.abs(v).max() > 0 for k, v in a.items() if k.endswith("weight"))


def test_predict_returns_numpy_logits_in_eval_mode(backend):
    model = backend.NiN(seed=0, init="kaiming")
    x = to_layout(np.random.default_rng(0).random((3, 1, 72, 72), dtype=np.float32), backend.DATA_FORMAT)
    first, second = backend.predict(model, x), backend.predict(model, x)
    assert isinstance(first, np.ndarray) and first.shape == (3, 10) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)  # dropout off: deterministic
    np.testing.assert_array_equal(backend.predict(model, x.astype(np.float64)), first)
    assert backend.predict(model, (x * 255).astype(np.uint8)).shape == (3, 10)


def test_nin_block_is_native_and_runs(backend):
    blk = backend.nin_block(8, kernel_size=3, strides=2, padding=1)
    x = np.zeros(shape_in(backend.DATA_FORMAT, 1, 1, 9), np.float32)
    if backend.BACKEND == "torch":
        import torch
        out = tuple(blk(torch.from_numpy(x)).shape)
    elif backend.BACKEND == "mxnet":
        import mxnet as mx
        blk.initialize()
        out = tuple(blk(mx.np.array(x)).shape)
    else:
        out = tuple(blk(x).shape)
    assert out == shape_in(backend.DATA_FORMAT, 1, 8, 5)


BAD_SHAPES = [
    ("rank", lambda f: (1, 224, 224), "got a 3-D array of shape (1, 224, 224)"),
    ("channels", lambda f: shape_in(f, 1, 3, 224), "with 3 on axis"),
    ("layout", lambda f: (1, 224, 224, 1) if f == "NCHW" else (1, 1, 224, 224), "it looks like"),
    ("too small", lambda f: shape_in(f, 1, 1, 60), "expected images of at least 67x67"),
]


@pytest.mark.parametrize("case,make_shape,fragment", BAD_SHAPES, ids=[c[0] for c in BAD_SHAPES])
def test_bad_input_same_message_everywhere(all_backends, case, make_shape, fragment):
    messages = set()
    for mod in all_backends:
        model = mod.NiN()
        shape = make_shape(mod.DATA_FORMAT)
        with pytest.raises(ValueError) as shape_err:
            mod.layer_shapes(model, shape)
        with pytest.raises(ValueError) as predict_err:
            mod.predict(model, np.zeros(shape, np.float32))
        assert fragment in str(shape_err.value)
        assert str(shape_err.value) == str(predict_err.value)
        shown = "(" + ", ".join(str(d) for d in shape) + ")"
        messages.add(str(shape_err.value).replace(shown, "SHAPE").replace(mod.DATA_FORMAT, "LAYOUT")
                     .replace("(batch, channels, height, width)", "AXES")
                     .replace("(batch, height, width, channels)", "AXES")
                     .replace("on axis 1", "on axis C").replace("on axis 3", "on axis C")
                     .replace("NCHW", "OTHER").replace("NHWC", "OTHER"))
    if case in ("rank", "too small"):
        assert len(messages) == 1, messages


def test_non_numeric_dtype_rejected(backend):
    model = backend.NiN()
    x = np.zeros(shape_in(backend.DATA_FORMAT, 1, 1, 96), dtype=object)
    with pytest.raises(ValueError, match="expected a real numeric array.*got dtype object"):
        backend.predict(model, x)
    with pytest.raises(ValueError, match="got dtype <U1"):
        backend.predict(model, np.full(shape_in(backend.DATA_FORMAT, 1, 1, 96), "a"))


def test_smallest_size_is_exact():
    spec = chapter()
    smallest = shapes.min_image_size(spec)
    assert smallest == 67
    assert shapes.survives(spec, smallest) and not shapes.survives(spec, smallest - 1)
    assert shapes.feature_shapes(spec, smallest)[5][1:] == (1, 1)


def test_bad_constructor_arguments(backend):
    for kwargs, fragment in [({"num_classes": 0}, "num_classes"), ({"in_channels": "3"}, "in_channels"),
                             ({"lr": -1}, "lr"), ({"init": "ones"}, "init"), ({"variant": "vgg"}, "variant")]:
        with pytest.raises(ValueError, match=fragment):
            backend.NiN(**kwargs)


def run_cli(*args, columns=None):
    env = dict(__import__("os").environ)
    env.pop("COLUMNS", None)  # not a terminal: rich's 80 columns, unless given
    if columns:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "nin_common.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_summary_single_backend(backend):
    res = run_cli("summary", "--backend", backend.BACKEND, "--image-size", "96")
    assert res.returncode == 0, res.stderr
    assert "1,992,166" in res.stdout
    last = (1, 384, 1, 1) if backend.DATA_FORMAT == "NCHW" else (1, 1, 1, 384)
    assert str(last) in res.stdout


def test_cli_summary_all_side_by_side(all_backends):
    res = run_cli("summary", "--backend", "all", "--in-channels", "3", "--num-classes", "5",
                  columns=60 * len(all_backends))  # wide enough for every backend's two columns
    assert res.returncode == 0, res.stderr
    assert "(1, 96, 54, 54)" in res.stdout and "(1, 54, 54, 96)" in res.stdout
    assert f"{shapes.num_params(chapter(5, 3)):,}" in res.stdout
    header = [line for line in res.stdout.splitlines() if f"{all_backends[0].BACKEND} layer" in line][0]
    assert all(f"{b.BACKEND} layer" in header for b in all_backends)


def test_cli_summary_all_fits_80_columns(all_backends):
    res = run_cli("summary", "--backend", "all", "--in-channels", "3", "--num-classes", "5")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "(1,96,54,54)" in res.stdout and "(1,54,54,96)" in res.stdout  # side by side still, shapes unbroken
    assert sum("1,997,953" in line for line in lines) == 1


@pytest.mark.parametrize("columns", [None, 80])
def test_cli_summary_all_reads_whole_at_80_columns_piped(all_backends, columns):
    # the widest variant: every layer's spec name and parameter count, each backend's shapes, the total
    from nin_common.arch.variants import build_spec

    spec = build_spec("nin-vgg19")
    res = run_piped(["summary", "--backend", "all", "--variant", "nin-vgg19"], columns=columns)
    assert res.returncode == 0, res.stderr
    params = shapes.layer_params(spec, 224)
    assert_reads_at_80(res.stdout, *[shapes.layer_name(layer) for layer in spec.layers],
                       *[f"{count:,}" for count in params], f"{sum(params):,}",
                       *{"(1,128,112,112)" if b.DATA_FORMAT == "NCHW" else "(1,112,112,128)" for b in all_backends})
    assert sum(f"{sum(params):,}" in line for line in res.stdout.splitlines()) == 1


def test_cli_unknown_backend_exits_2():
    res = run_cli("summary", "--backend", "nope")
    assert res.returncode == 2
    assert f"expected backends among {', '.join(registry.BACKENDS)} (or 'all'), got 'nope'" in res.stderr


def test_cli_missing_framework_names_the_extra(tmp_path):
    # Hide torch from the interpreter: the command must name the extra to install.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('No module named torch')\n")
    env = dict(__import__("os").environ, PYTHONPATH=str(tmp_path) + ":" + __import__("os").getcwd())
    res = subprocess.run([sys.executable, "-m", "nin_common.cli", "summary", "--backend", "torch"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    assert "pip install 'nin[torch]'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
