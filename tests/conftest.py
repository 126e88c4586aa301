"""One harness: every check is written once and parametrized over the registered backends.

A backend whose framework is not installed is skipped with that reason, unless
NIN_REQUIRE_BACKENDS=all (set by .ci/run), where it fails instead.

GPU tests (marked ``gpu``) are skipped with the reason where the framework sees no GPU, unless NIN_REQUIRE_GPU=1,
where they fail instead.

Fashion-MNIST: the tests that train or evaluate on it find it as ``nin`` does (``nin_common.engine.data.locate``:
NIN_DATA_DIR, the user cache, Debian's copy, else a download into the cache).  Where none of these has it, each
such test is skipped saying so, unless NIN_REQUIRE_DATA=1 (set by .ci/run), where it fails instead.  The lookup
runs once per session and setting: where the data is missing, a download is tried once, not once per test.
"""
import os

import numpy as np
import pytest

from nin_common.arch import shapes
from nin_common.arch.shapes import array_to_layout, batch_shape
from nin_common.engine import data, registry

REQUIRED = os.environ.get("NIN_REQUIRE_BACKENDS", "")
REQUIRE_DATA = os.environ.get("NIN_REQUIRE_DATA", "") == "1"
REQUIRE_GPU = os.environ.get("NIN_REQUIRE_GPU", "") == "1"
_locate = data.locate
_data_missing = {}  # the settings a default lookup failed under -> its DataUnavailable


def _locate_once(data_dir=None, **kwargs):
    """``data.locate`` in the tests: a default lookup that failed fails again at once under the same settings."""
    if data_dir or kwargs:
        return _locate(data_dir, **kwargs)
    key = tuple(os.environ.get(k) for k in ("NIN_DATA_DIR", "XDG_CACHE_HOME", "HOME", "NIN_DATA_MIRROR"))
    if key in _data_missing:
        raise _data_missing[key]
    try:
        return _locate(progress=False)
    except data.DataUnavailable as err:
        _data_missing[key] = err
        raise


data.locate = _locate_once


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that needed Fashion-MNIST where there is none is skipped with the reason (NIN_REQUIRE_DATA=1: fails)."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_GPU and report.skipped and item.get_closest_marker("gpu") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"NIN_REQUIRE_GPU=1 but this GPU test was skipped: {reason}"
        return
    if call.excinfo is not None and call.excinfo.errisinstance(data.DataUnavailable) and not REQUIRE_DATA:
        first = str(call.excinfo.value).splitlines()[0]
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0,
                           f"Skipped: needs Fashion-MNIST ({first} {data.HOW_TO_GET}; NIN_REQUIRE_DATA=1 makes this "
                           f"a failure)")


@pytest.fixture
def fashion_mnist():
    """The folder holding Fashion-MNIST, for tests that hand it to another process (skipped where there is none)."""
    return data.locate()


def _unavailable(name, err):
    """Skip saying why, or fail where NIN_REQUIRE_BACKENDS asks for backend ``name``."""
    if REQUIRED == "all" or name in REQUIRED.split(","):
        pytest.fail(f"NIN_REQUIRE_BACKENDS={REQUIRED} but {err}", pytrace=False)
    pytest.skip(str(err))


def load_backend(name):
    try:
        return registry.load(name)
    except registry.BackendUnavailable as err:
        _unavailable(name, err)


def require_installed(name):
    """For tests whose process must not import the framework: skip (or fail) where it is not installed."""
    try:
        registry.available(name)
    except registry.BackendUnavailable as err:
        _unavailable(name, err)


# The backends that train in bf16 (MXNet 1.9 cannot: nin_mxnet.training.NO_BF16); test_precision.py checks this
# list against what every backend does, so a bf16 test parametrized over it exists for exactly those backends.
BF16 = ("torch", "tf", "jax")


@pytest.fixture(params=registry.BACKENDS)
def backend(request):
    """The backend module (nin_torch, nin_mxnet, nin_tf, nin_jax: every registered one)."""
    return load_backend(request.param)


# the registered backends whose framework is installed (found without importing it), in registry order: what a
# test parametrizes over where it imports the frameworks in processes of its own
installed_names = registry.installed


@pytest.fixture
def all_backends():
    """Every registered backend module whose framework is installed, in registry order (cross-backend checks run
    over what this environment has): a missing one is left out, unless NIN_REQUIRE_BACKENDS names it, where the
    test fails instead."""
    modules = []
    for name in registry.BACKENDS:
        try:
            modules.append(registry.load(name))
        except registry.BackendUnavailable as err:
            if REQUIRED == "all" or name in REQUIRED.split(","):
                pytest.fail(f"NIN_REQUIRE_BACKENDS={REQUIRED} but {err}", pytrace=False)
    if not modules:
        pytest.skip("no backend's framework is installed")
    return modules


# test-side names for the layout helpers of nin_common.arch.shapes
to_layout, shape_in = array_to_layout, batch_shape


DENSE_SIZE = 32


def dense_head(num_classes=10, in_channels=1):
    """A small net with a fully connected head: Flatten of a 3x3 map (C, H, W order matters), ceil-mode pooling."""
    from nin_common.arch import spec as S
    return S.NetSpec(in_channels, (
        S.nin_stage(8, 5, 2, 0), S.MaxPool(3, 2),
        S.nin_stage(12, 3, 1, 1), S.MaxPool(3, 2, ceil_mode=True),
        S.Dropout(0.5), S.Flatten(), S.Dense(20), S.Dense(num_classes),
    ), name="dense_head")


@pytest.fixture
def dense_variant(monkeypatch):
    """Register ``dense_head`` as a variant for one test: pass the result to NiN (variant, image_size)."""
    from nin_common.arch.variants import VARIANTS
    monkeypatch.setitem(VARIANTS, "dense_head", dense_head)
    return dict(variant="dense_head", image_size=DENSE_SIZE)


def training_of(backend):
    """A backend's ``training`` module (its Trainer, fit, build_model)."""
    return registry.part(backend.BACKEND, "training")


def pool_oracle(x: np.ndarray, kind: str, k: int, s: int, ceil_mode: bool) -> np.ndarray:
    """NCHW pooling without padding, written out as loops: a partial last window (ceil mode) uses only its
    in-image part (Caffe, PyTorch ``ceil_mode=True``, MXNet ``'full'``)."""
    h, w = x.shape[2:]
    oh, ow = shapes.pool_out(h, k, s, ceil_mode), shapes.pool_out(w, k, s, ceil_mode)
    reduce = np.max if kind == "max" else np.mean
    res = np.empty(x.shape[:2] + (oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            res[:, :, i, j] = reduce(x[:, :, i * s:min(i * s + k, h), j * s:min(j * s + k, w)], axis=(2, 3))
    return res


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What Python does at start-up with the nin_runtime.pth that installing nin puts into site-packages (setup.py):
# a checkout used without installing it (PYTHONPATH=.) gets the same import hook; where nin is installed, the
# hook is already there and installing it again changes nothing.
INSTALLED_PRELUDE = f"import site; site.addsitedir({REPO!r})\n"


def run_python(code, timeout=600):
    """``code`` in a fresh Python process of this environment, with nin installed as ``pip install`` does."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
               TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", INSTALLED_PRELUDE + code], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def run_piped(argv, columns=None, timeout=600):
    """``nin ARGV`` (or ``python ARGV`` where it starts with ``-c``) in a fresh process whose output goes to a pipe
    and that has no terminal at all: rich lays its tables out at 80 columns, or at ``columns`` given as $COLUMNS."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    command = [sys.executable, *argv] if argv[0] == "-c" else [sys.executable, "-m", "nin_common.cli", *argv]
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout,
                          env=env)


def assert_reads_at_80(text, *cells):
    """Every line of ``text`` within 80 columns, no cell cut ("…"), and each of ``cells`` whole in some line."""
    lines = text.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "…" not in text
    words = {word for line in lines for word in line.split()}
    missing = [cell for cell in cells if cell not in words]
    assert not missing, missing
