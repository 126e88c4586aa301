"""Process-wide settings: each backend makes them in its ``runtime`` module only, says which, and no other."""
import json

import pytest

from nin_common.engine import registry
from conftest import require_installed, run_python

PROBE = """
import json, os, sys
before = dict(os.environ)
import {package}
from {package} import runtime
after = dict(os.environ)
print(json.dumps(dict(changed=sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)),
                      declared=sorted(runtime.ENVIRONMENT), parity=callable(runtime.full_float32))))
"""


@pytest.mark.parametrize("name", registry.BACKENDS)
def test_importing_a_backend_changes_only_what_its_runtime_declares(name):
    require_installed(name)
    res = run_python(PROBE.format(package=registry.info(name).package))
    assert res.returncode == 0, res.stderr[-3000:]
    found = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(found["changed"]) <= set(found["declared"]), found
    assert found["parity"]


def test_keras_policy_is_restored_after_a_float64_copy(all_backends):
    tf_backend = next((b for b in all_backends if b.BACKEND == "tf"), None)
    from nin_tf import parity, runtime
    from tensorflow import keras

    before = keras.config.dtype_policy().name
    double = parity.as_float64(tf_backend.NiN(seed=0, image_size=67))
    assert keras.config.dtype_policy().name == before and double.net.layers[0].layers[0].kernel.dtype == "float64"
    with pytest.raises(RuntimeError):
        with runtime.dtype_policy("float64"):
            raise RuntimeError("inside")
    assert keras.config.dtype_policy().name == before


ONEDNN_PROBE = """
import json, os
{setting}
import tensorflow as tf
import nin_tf
from tensorflow.python.util import _pywrap_util_port
print(json.dumps(dict(onednn=_pywrap_util_port.IsMklEnabled(), variable=os.environ.get("TF_ENABLE_ONEDNN_OPTS"))))
"""


@pytest.mark.parametrize("setting, expected", [("os.environ.pop('TF_ENABLE_ONEDNN_OPTS', None)", True),
                                               ("os.environ['TF_ENABLE_ONEDNN_OPTS'] = '0'", False)])
def test_tensorflow_computes_with_onednn_unless_the_user_says_no(setting, expected):
    """On every x86 CPU, AVX2-only ones included, even where TensorFlow was imported first; a user's
    TF_ENABLE_ONEDNN_OPTS=0 wins."""
    res = run_python(ONEDNN_PROBE.format(setting=setting))
    assert res.returncode == 0, res.stderr[-3000:]
    found = json.loads(res.stdout.strip().splitlines()[-1])
    assert found == dict(onednn=expected, variable="1" if expected else "0"), found


# What each framework reads for float32 on a GPU, read back in a fresh process before and after the backend's
# full_float32() (what nin parity switches on): the setting changes on a CPU too, where nothing reads it yet.
FLOAT32_READBACK = {
    "torch": "[torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32]",
    "mxnet": "[os.environ.get(k) for k in sorted(runtime.PARITY_ENVIRONMENT)]",
    "tf": "[tf.config.experimental.tensor_float_32_execution_enabled()]",
    "jax": "[jax.config.jax_default_matmul_precision]",
}
FLOAT32_EXPECTED = {"torch": [False, False], "mxnet": None, "tf": [False], "jax": ["highest"]}
FLOAT32_PROBE = """
import json, os
import {package}
from {package} import runtime
{framework_import}
for key in getattr(runtime, "PARITY_ENVIRONMENT", {{}}):  # unset, as a parity run may have set them
    os.environ.pop(key, None)
before = {readback}
runtime.full_float32()
print(json.dumps(dict(before=before, after={readback}, declared=runtime.PARITY_ENVIRONMENT
                      if hasattr(runtime, "PARITY_ENVIRONMENT") else None)))
"""


@pytest.mark.parametrize("name", registry.BACKENDS)
def test_parity_mode_turns_tf32_off_in_every_framework(name):
    """cuBLAS/cuDNN (PyTorch, MXNet), TensorFlow and XLA compute float32 products in TF32 on a GPU by default;
    the parity checks' float32 tolerances assume float32, and full_float32() says so to each framework."""
    require_installed(name)
    entry = registry.info(name)
    module = {"tf": "tensorflow as tf"}.get(name, entry.module)
    res = run_python(FLOAT32_PROBE.format(package=entry.package, framework_import=f"import {module}",
                                          readback=FLOAT32_READBACK[name]))
    assert res.returncode == 0, res.stderr[-3000:]
    found = json.loads(res.stdout.strip().splitlines()[-1])
    expected = FLOAT32_EXPECTED[name] or [found["declared"][k] for k in sorted(found["declared"])]
    assert found["after"] == expected and found["before"] != expected, found


GPU_MEMORY = {"jax": ("XLA_PYTHON_CLIENT_PREALLOCATE", "false"), "tf": ("TF_FORCE_GPU_ALLOW_GROWTH", "true")}


@pytest.mark.parametrize("name", sorted(GPU_MEMORY))
@pytest.mark.parametrize("user", [None, "mine"])
def test_a_gpu_is_shared_unless_the_user_says_otherwise(name, user):
    """JAX would take 75 % of a GPU's memory and TensorFlow nearly all of it in the first process that computes
    there, so a second process (a parallel test, a data-parallel worker) fails: importing the backend asks each to
    allocate as it needs, before the framework reads the variable; a value the user set wins."""
    require_installed(name)
    variable, value = GPU_MEMORY[name]
    setting = "" if user is None else f"os.environ[{variable!r}] = {user!r}\n"
    res = run_python(f"import os\nos.environ.pop({variable!r}, None)\n{setting}"
                     f"import {registry.info(name).package}\nprint(os.environ[{variable!r}])")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split()[-1] == (user or value)
