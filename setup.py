"""Packaging hook (everything else is in pyproject.toml): a wheel carries configs/ and data/ — prices,
templates, simulated models, built-in configs and seed data — as agen/_bundled, so an installed agen
runs from any directory. A checkout (and an editable install) reads them where they are."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in ("configs", "data"):
            shutil.copytree(ROOT / name, Path(self.build_lib) / "agen" / "_bundled" / name, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithData})
