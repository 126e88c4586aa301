"""setuptools reads the project from pyproject.toml; this file only adds ``nin_runtime.pth`` to what is installed.

``nin_runtime.pth`` goes to site-packages itself (not into a package), where Python runs it at start-up: it
installs the import hook of ``common.util.runtime`` (see README, "Any import order").  setuptools has no
setting for a file at the top of site-packages, hence this ``build_py``.
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "nin_runtime.pth"


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


setup(cmdclass={"build_py": BuildPyWithPth})
