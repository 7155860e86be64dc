"""Build hook: the wheel carries ``data_manifests/`` (split files, class lists, the demo index)
as package data under ``latentcache/data_manifests/``; the folder itself stays at the top level
of the source tree. Everything else is configured in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MANIFESTS = Path(__file__).resolve().parent / "data_manifests"


class BuildPyWithManifests(build_py):
    """``build_py`` that also copies ``data_manifests/`` into the built ``latentcache`` package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # editable installs read the source tree
            return
        target = Path(self.build_lib) / "latentcache" / "data_manifests"
        shutil.copytree(MANIFESTS, target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithManifests})
