"""Every order of importing the frameworks and the backend packages works in one process.

TensorFlow loaded before MXNet crashed the process (``Segmentation fault: 11``, or ``random_device could not be
read`` via nin_tf then nin_mxnet): see ``nin_common.util.runtime`` for the cause and the fix.  Each order runs in a
fresh process (a crash cannot be undone in one) and ends by building and running a tiny model in every backend.
"""
import itertools
import json
import os
import subprocess
import sys

import pytest

from nin_common.engine import registry
from conftest import REPO, installed_names, require_installed, run_python

SIZE = 67  # the smallest image the chapter's network takes
INSTALLED = installed_names()  # every registered one where CI requires them all
FRAMEWORKS = [registry.info(name).module for name in INSTALLED]
PACKAGES = [registry.info(name).package for name in INSTALLED]
BUILD_ALL = f"""
import numpy
from nin_common.engine import registry
for name in {INSTALLED!r}:
    b = registry.load(name)
    model = b.NiN(seed=0, image_size={SIZE})
    shape = (1, 1, {SIZE}, {SIZE}) if b.DATA_FORMAT == "NCHW" else (1, {SIZE}, {SIZE}, 1)
    logits = b.predict(model, numpy.ones(shape, numpy.float32))
    print(name, logits.shape, flush=True)
"""


def orders(names):
    """Every order of the chapter's three frameworks (the first three registered), with each further backend
    inserted at a position that moves from order to order, so that it stands in every position (first, between
    each pair, last) at least once: 6 fresh processes per list instead of every permutation (24 for four)."""
    base, extra = list(names[:3]), list(names[3:])
    out = []
    for i, perm in enumerate(itertools.permutations(base)):
        order = list(perm)
        for j, name in enumerate(extra):
            order.insert((i + j) % (len(order) + 1), name)
        out.append(tuple(order))
    return out


def test_orders_cover_every_permutation_and_position():
    names = ["a", "b", "c", "d"]
    got = orders(names)
    assert {tuple(n for n in o if n != "d") for o in got} == set(itertools.permutations("abc"))
    assert {o.index("d") for o in got} == {0, 1, 2, 3}


@pytest.mark.parametrize("order", [o for names in (FRAMEWORKS, PACKAGES) for o in orders(names)], ids="-".join)
def test_every_import_order_works(all_backends, order):
    res = run_python("".join(f"import {name}\n" for name in order) + BUILD_ALL)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr[-3000:])
    assert res.stdout.split() == [t for name in INSTALLED for t in (name, "(1,", "10)")]


def test_mxnet_after_tensorflow_without_the_hook_is_refused_in_one_line():
    """Where the hook is missing (nin not installed, the hook removed), ``nin_mxnet`` after TensorFlow says what
    to do instead of crashing the process."""
    require_installed("mxnet")
    require_installed("tf")
    res = run_python("import sys\nfrom nin_common.util import runtime\n"
                     "sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, runtime.Hook)]\n"
                     "import tensorflow\nfrom nin_common.engine import registry\n"
                     "try:\n    registry.load('mxnet')\nexcept registry.BackendUnavailable as err:\n    print(err)\n")
    assert res.returncode == 0, (res.returncode, res.stderr[-3000:])
    assert "expected MXNet to be imported before TensorFlow, or nin's import hook to be installed" in res.stdout
    assert len(res.stdout.strip().splitlines()) == 1


def test_the_package_installs_the_hook(tmp_path):
    """What ``pip install`` builds holds nin_runtime.pth at its top (site-packages), and the file installs the hook."""
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(tmp_path)], cwd=REPO, check=True,
                   capture_output=True)
    with open(tmp_path / "nin_runtime.pth") as f, open(os.path.join(REPO, "nin_runtime.pth")) as g:
        assert f.read() == g.read() == ("import nin_common.util.runtime as nin_runtime; nin_runtime.install(); "
                                        "del nin_runtime\n")
    res = run_python("import sys\nfrom nin_common.util import runtime\nprint(runtime.installed())")
    assert res.stdout.strip() == "True", res.stderr


def test_start_up_imports_nothing_but_the_hook():
    """What runs at every interpreter start where nin is installed: the hook's module and nothing else of nin's
    or of a framework's; a user's own ``common`` is not touched."""
    res = run_python("import sys, json\n"
                     "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
                     "('common', 'nin_common', 'numpy', 'torch', 'tensorflow', 'jax', 'mxnet', 'typing', 'ctypes'))))")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout) == ["nin_common", "nin_common.util", "nin_common.util.runtime"]


def test_a_projects_own_common_package_stays_its_own(tmp_path):
    """nin installs its core as ``nin_common``: a project with a package named ``common`` imports its own, and nin
    works beside it, in either order."""
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "__init__.py").write_text("")
    (tmp_path / "common" / "utils.py").write_text("WHOSE = 'the project'\n")
    code = ("import sys; sys.path.insert(0, {here!r})\n"
            "from common.utils import WHOSE\n"
            "import nin_torch\n"
            "from nin_common.engine import registry\n"
            "import common\n"
            "print(WHOSE, common.__file__.startswith({here!r}), registry.BACKENDS[0])\n").format(here=str(tmp_path))
    res = run_python(code)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["the", "project", "True", "torch"]
