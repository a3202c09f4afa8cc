"""Crash and disk-full injection for the durability tests; inert unless its environment variables are set.

    AGEN_CRASHPOINT=name[:nth]       `crashpoint(name)` kills the process (os._exit(137), no cleanup,
                                     like kill -9) on its nth call (default 1st)
    AGEN_FAULT_ENOSPC_AFTER=bytes    shard writes fail with ENOSPC once this many bytes were written
                                     by this process (the last write lands partly: a torn line)

Both are read once at import; when unset, `crashpoint` is an empty function and `ENOSPC_AFTER` is
None, so production code pays one call or one `is None` test per batch.
"""

from __future__ import annotations

import errno
import os

CRASH_EXIT = 137
_spec = os.environ.get("AGEN_CRASHPOINT")
_enospc = os.environ.get("AGEN_FAULT_ENOSPC_AFTER")
ENOSPC_AFTER: int | None = int(_enospc) if _enospc else None
_written = 0

if _spec:
    _name, _, _nth_text = _spec.partition(":")
    _nth = int(_nth_text or 1)
    _seen = 0

    def crashpoint(name: str) -> None:
        """Die here, abruptly, on the configured occurrence of `name`."""
        global _seen
        if name == _name:
            _seen += 1
            if _seen == _nth:
                os._exit(CRASH_EXIT)
else:
    def crashpoint(name: str) -> None:
        """Inert: AGEN_CRASHPOINT is not set."""


def disk_room(n: int) -> int:
    """How many of the next `n` bytes fit before the injected disk-full (only when ENOSPC_AFTER is set)."""
    global _written
    assert ENOSPC_AFTER is not None
    room = max(0, min(n, ENOSPC_AFTER - _written))
    _written += room
    return room


def enospc(path: str) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
