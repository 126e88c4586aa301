"""Process-wide settings: each backend makes them in its ``runtime`` module only, says which, and no other."""
import json

import pytest

from nin_common.engine import registry
from conftest import run_python

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
def test_importing_a_backend_changes_only_what_its_runtime_declares(name, all_backends):
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
