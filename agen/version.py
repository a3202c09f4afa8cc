"""Which agen is installed, read once per process.

`importlib.metadata.version` parses the whole METADATA file with the email parser, README
included (~30 ms); the version is in the header block at the top, so only that is read.
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, distribution

__all__ = ["agen_version"]


@functools.cache
def agen_version() -> str | None:
    """The installed distribution's version, or None for a bare source checkout on sys.path."""
    try:
        dist = distribution("agen")
    except PackageNotFoundError:
        return None
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.splitlines():
        if not line:  # the end of the header block
            break
        if line.startswith("Version:"):
            return line.removeprefix("Version:").strip()
    return dist.version
