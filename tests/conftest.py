"""One harness: every check is written once and parametrized over the registered backends.

A backend whose framework is not installed is skipped with that reason, unless
NIN_REQUIRE_BACKENDS=all (set by .ci/run), where it fails instead.
"""
import os

import numpy as np
import pytest

from common.arch import shapes
from common.arch.shapes import array_to_layout, batch_shape
from common.engine import registry

REQUIRED = os.environ.get("NIN_REQUIRE_BACKENDS", "")


def load_backend(name):
    try:
        return registry.load(name)
    except registry.BackendUnavailable as err:
        if REQUIRED == "all" or name in REQUIRED.split(","):
            pytest.fail(f"NIN_REQUIRE_BACKENDS={REQUIRED} but {err}", pytrace=False)
        pytest.skip(str(err))


@pytest.fixture(params=registry.BACKENDS)
def backend(request):
    """The backend module (nin_torch, nin_mxnet, nin_tf, nin_jax: every registered one)."""
    return load_backend(request.param)


@pytest.fixture
def all_backends():
    """Every registered backend module (for cross-backend checks)."""
    return [load_backend(name) for name in registry.BACKENDS]


# test-side names for the layout helpers of common.arch.shapes
to_layout, shape_in = array_to_layout, batch_shape


DENSE_SIZE = 32


def dense_head(num_classes=10, in_channels=1):
    """A small net with a fully connected head: Flatten of a 3x3 map (C, H, W order matters), ceil-mode pooling."""
    from common.arch import spec as S
    return S.NetSpec(in_channels, (
        S.nin_stage(8, 5, 2, 0), S.MaxPool(3, 2),
        S.nin_stage(12, 3, 1, 1), S.MaxPool(3, 2, ceil_mode=True),
        S.Dropout(0.5), S.Flatten(), S.Dense(20), S.Dense(num_classes),
    ), name="dense_head")


@pytest.fixture
def dense_variant(monkeypatch):
    """Register ``dense_head`` as a variant for one test: pass the result to NiN (variant, image_size)."""
    from common.arch.variants import VARIANTS
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
