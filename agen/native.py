"""Which build of the engine runs: the mypyc-compiled modules, or their Python sources.

`setup.py` compiles the modules in `COMPILED` (the per-request and per-candidate work: the HTTP
pool and attempt loop, parsing bodies and answers, the vote and its tally, dedup, records, ledger
and cost bookkeeping) when it
can, and writes `MANIFEST` beside them: a digest of each source it compiled. Python would import a compiled module before its `.py`, so `guard()` (run
by `agen/__init__`, before any of them is imported) uses the compiled build only when every
source still matches its digest: an editable checkout whose sources were edited since the last
`pip install -e .` runs the edited code, never a stale build. All or none: compiled modules call
each other directly, so one stale module makes the whole build unusable. `AGEN_PURE=1` forces
the sources (to compare the two, or to debug). `status()` says which runs and why.

Stand-alone (standard library only): `setup.py` imports it before agen is installed.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

# No coroutine here suspends in an `except` or `finally` block: mypyc loses an exception on its way
# out when one suspends on a future that then raises (mypy 2.4 on uvloop 0.23; tests/test_native.py).
# `providers.lane` stays out: benchmarks/rate_limits.py subclasses its Lane.
COMPILED = (
    "cost",
    "engine.admission", "engine.fewshot", "engine.records", "engine.tasks", "engine.turns", "engine.watchdog",
    "gen.answers", "gen.dedup", "gen.dedup_store", "gen.parse", "gen.prompts", "gen.solutions", "gen.vote",
    "filters.answer_consistency",
    "providers.attempts", "providers.breaker", "providers.client", "providers.facts", "providers.headers",
    "providers.http1", "providers.http1_conn", "providers.pacer", "providers.reserve",
    "providers.retry", "providers.reward", "providers.wire",
    "run.committed", "run.journal", "run.ledger",
    "types",
)
# Hand-written C helpers built beside them (`agen/gen/_minhash.c`, `_keybuf.c`, `_lcs.c`): where the
# work is many small numpy calls, Python ints in a dict or a Python object per candidate, which
# compiling the Python around them cannot remove. Each has the same computation in Python, used
# when the helper is absent or the build is not used.
C_HELPERS = ("gen._minhash", "gen._keybuf", "gen._lcs")
MANIFEST = "_compiled.json"
_PACKAGE = Path(__file__).resolve().parent
_status = "pure Python (not built)"


def source_path(module: str, package: Path = _PACKAGE) -> Path:
    """The source of a module named as in `COMPILED` ("gen.parse") or `C_HELPERS` inside the `agen`
    folder `package`: its `.py`, or a helper's `.c`."""
    return package.joinpath(*module.split(".")).with_suffix(".c" if module in C_HELPERS else ".py")


def source_digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Imports the listed modules from their `.py`, whatever compiled file lies beside it, and
    none of the C helpers (their callers then take their Python path)."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.helpers = {f"agen.{m}" for m in C_HELPERS}

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name in self.helpers:
            raise ModuleNotFoundError(f"{name}: not used in a pure-Python run ({_status})", name=name)
        if name not in self.names:
            return None
        return importlib.util.spec_from_file_location(name, source_path(name.removeprefix("agen.")))


def _decide() -> tuple[bool, str]:
    if os.environ.get("AGEN_PURE", "") not in ("", "0"):
        return False, "pure Python (AGEN_PURE is set)"
    try:
        manifest = json.loads((_PACKAGE / MANIFEST).read_text())
    except (OSError, ValueError):
        return False, "pure Python (not built)"
    if set(manifest) != {f"agen.{m}" for m in COMPILED + C_HELPERS}:
        return False, "pure Python (built for another module list)"
    for name, digest in manifest.items():
        source = source_path(name.removeprefix("agen."))
        try:
            if source_digest(source) != digest:
                return False, f"pure Python ({source.relative_to(_PACKAGE.parent)} changed since the build)"
        except OSError:
            return False, f"pure Python ({name} has no source)"
    return True, f"compiled (mypyc, {len(COMPILED)} modules; {len(C_HELPERS)} C helpers)"


def guard() -> None:
    """Make sure what is imported is the compiled build only if it matches the sources."""
    global _status
    compiled, _status = _decide()
    if not compiled and not any(isinstance(f, _SourcesFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst({f"agen.{m}" for m in COMPILED}))


def status() -> str:
    """Which build runs, and why: "compiled (mypyc, N modules; M C helpers)" or "pure Python (why)"."""
    return _status


def is_compiled(module: object) -> bool:
    """Whether a module object came from a compiled extension (tests and benchmarks check it)."""
    return str(getattr(module, "__file__", "")).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
