"""What installing nin asks of an environment: numpy 2 and the frameworks' current releases are kept, only MXNet's
extra holds numpy below 2, and nin's packages carry names nin owns."""
import os
import tomllib

from packaging.requirements import Requirement

from nin_common.engine import registry
from conftest import REPO

with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    PROJECT = tomllib.load(f)["project"]
EXTRAS = {name: [Requirement(text) for text in texts] for name, texts in PROJECT["optional-dependencies"].items()}
UPPER = ("<", "<=", "==", "===", "~=")


def upper_bounds(req):
    return [str(spec) for spec in req.specifier if spec.operator in UPPER]


def expanded(extra):
    """The requirements of an extra with the extras it names (``nin[torch,tf]``) spelt out."""
    found = []
    for req in EXTRAS[extra]:
        found += [r for name in sorted(req.extras) for r in expanded(name)] if req.name == "nin" else [req]
    return found


def test_the_core_bounds_nothing_from_above():
    for text in PROJECT["dependencies"]:
        assert not upper_bounds(Requirement(text)), text


def test_only_the_mxnet_extra_holds_numpy_or_anything_else_back():
    for extra, reqs in EXTRAS.items():
        for req in reqs:
            if extra == "mxnet":
                assert req.name in ("mxnet", "numpy")
            else:
                assert not upper_bounds(req), (extra, str(req))
    assert [str(r) for r in EXTRAS["mxnet"] if r.name == "numpy"] == ["numpy<2"]


def test_every_backend_has_its_extra_and_the_current_one_leaves_mxnet_out():
    for entry in registry.REGISTERED:
        assert entry.extra in EXTRAS, entry.name
    current = {r.name for r in expanded("current")}
    assert "mxnet" not in current and "numpy" not in current
    assert {"torch", "tensorflow-cpu", "jax", "flax", "optax", "onnx", "onnxruntime"} <= current
    assert {r.name for r in expanded("all")} >= current | {"mxnet"}


def test_the_licence_is_an_spdx_string_with_its_file():
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as f:
        assert "Apache License" in f.read(200)
