"""YAML in and out through libyaml when PyYAML was built with it (the wheels are).

The pure-Python loader and dumper cost ~30 ms a session for the price table and the config
snapshot, a fixed cost every short run pays; the C ones parse the same safe subset with the same
resolver, raise the same `yaml.YAMLError`s, and are ~10× cheaper.
"""

from __future__ import annotations

from typing import Any

import yaml

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

__all__ = ["dump", "load"]


def load(text: str) -> Any:
    """`yaml.safe_load(text)`, faster."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader


def dump(data: Any, *, sort_keys: bool = True) -> str:
    """`yaml.safe_dump(data, sort_keys=...)`, faster."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=sort_keys)
