"""setuptools reads the project from pyproject.toml; this file adds what its tables cannot say.

* **The packages.**  The folder ``common/`` is installed as the package ``nin_common``: ``common`` is one of the
  most frequent package names in Python, and a user's own ``common`` must stay theirs with nin installed beside
  it.  Every backend package is ``nin_<name>``, installed under its folder's name.
* **``nin_runtime.pth``** goes to site-packages itself (not into a package), where Python runs it at start-up: it
  installs the import hook of ``nin_common.util.runtime`` (see README, "Any import order").  setuptools has no
  setting for a file at the top of site-packages, hence this ``build_py``.
"""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PTH = "nin_runtime.pth"
CORE, INSTALLED_AS = "common", "nin_common"  # the folder, and the package it is installed as


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        # a wheel holds what build_lib holds; an editable wheel (pip install -e) is assembled in the folder
        # that the editable build makes the install command's install_lib
        target = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        self.copy_file(PTH, os.path.join(target, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        extra = [] if self.editable_mode else [os.path.join(self.build_lib, PTH)]
        return super().get_outputs(include_bytecode) + extra


setup(
    cmdclass={"build_py": BuildPyWithPth},
    package_dir={INSTALLED_AS: CORE},
    packages=[INSTALLED_AS + name[len(CORE):] for name in find_packages(include=[CORE, CORE + ".*"])]
    + find_packages(include=["nin_*"]),
)
