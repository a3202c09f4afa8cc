"""agen: turn a few seed examples into many verified LLM training examples.

`agen.run(config, **overrides)` runs a config (the `agen.run` package is callable, see
`agen/run/__init__.py`); `agen.load(run_dir)` reads a run's records back (see `agen.api`).
"""

from typing import Any

from agen import native

native.guard()  # before any compiled module can be imported: a stale build is never used


def __getattr__(name: str) -> Any:
    if name == "run":  # `import agen; agen.run(...)` before anything imported the package
        import agen.run

        return agen.run
    if name in ("load", "RunResult"):
        from agen import api

        return getattr(api, name)
    raise AttributeError(f"module 'agen' has no attribute {name!r}")
