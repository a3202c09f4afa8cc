"""Packaging hook (everything else is in pyproject.toml).

1. A wheel carries configs/ and data/ — prices, templates, simulated models, built-in configs and
   seed data — as agen/_bundled, so an installed agen runs from any directory. A checkout (and an
   editable install) reads them where they are.
2. The engine's per-request modules (`agen.native.COMPILED`) are compiled with
   mypyc, the mypy team's compiler for annotated Python (mypy and black ship built with it), and
   the C helpers (`agen.native.C_HELPERS`: the dedup signature, key buffer and LCS check) are built beside them: ~26% fewer
   instructions per request for the whole pipeline (benchmarks/engine_overhead.py). The sources
   stay the truth (each helper's computation is also in Python). Without a C compiler, with
   `AGEN_COMPILE=0`, or if mypyc fails, the install is pure Python and behaves the same; at run
   time a build whose sources have changed since is not used (`agen/native.py`), and
   `agen --version` says which one runs.
"""

import json
import os
import shutil
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "agen"))
from native import C_HELPERS, COMPILED, MANIFEST, source_digest, source_path  # agen/native.py: standard library only

del sys.path[0]


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in ("configs", "data"):
            shutil.copytree(ROOT / name, Path(self.build_lib) / "agen" / "_bundled" / name, dirs_exist_ok=True)


class BuildCompiled(build_ext):
    """Builds the mypyc extensions and the C helpers, and on success writes the manifest of the
    sources they were built from; on any failure removes what it built, so the install is wholly
    pure Python (a module's compiled shim without its shared library would not import at all)."""

    def run(self) -> None:
        if not self.extensions:
            return
        outputs = [Path(self.get_ext_fullpath(e.name)) for e in self.extensions]
        package = Path(self.get_ext_fullpath("agen.x")).parent
        (package / MANIFEST).unlink(missing_ok=True)  # an earlier build's, in an editable checkout
        for path in package.rglob("*"):  # and its modules no longer compiled: Python would import them before the .py
            if path.name.endswith(tuple(EXTENSION_SUFFIXES)) and path not in outputs:
                path.unlink()
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, a missing compiler: anything
            for path in outputs:
                path.unlink(missing_ok=True)
            print(f"agen: compiling the engine failed ({exc}); installing pure Python", file=sys.stderr)
            return
        manifest = {f"agen.{m}": source_digest(source_path(m, ROOT / "agen")) for m in COMPILED + C_HELPERS}
        (package / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    def get_outputs(self) -> list[str]:  # the manifest ships with the extensions
        outputs = super().get_outputs()
        if outputs:
            outputs.append(str(Path(self.get_ext_fullpath("agen.x")).parent / MANIFEST))
        return outputs


def compiled_extensions() -> list:
    if os.environ.get("AGEN_COMPILE", "1") == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("agen: mypyc is not installed; installing pure Python", file=sys.stderr)
        return []
    cwd = os.getcwd()
    os.chdir(ROOT)  # mypyc names modules by their paths relative to the working directory
    try:
        paths = [str(source_path(m, Path("agen"))) for m in COMPILED]  # relative, see above
        helpers = [Extension(f"agen.{m}", [str(source_path(m, Path("agen")))], extra_compile_args=["-O3"])
                   for m in C_HELPERS]
        return mypycify(paths + ["--ignore-missing-imports", "--follow-imports=silent", "--no-site-packages"],
                        opt_level="3", group_name="agen._compiled") + helpers
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error it cannot compile past
        print(f"agen: mypyc could not compile the engine ({exc}); installing pure Python", file=sys.stderr)
        return []
    finally:
        os.chdir(cwd)


setup(cmdclass={"build_py": BuildPyWithData, "build_ext": BuildCompiled}, ext_modules=compiled_extensions())
