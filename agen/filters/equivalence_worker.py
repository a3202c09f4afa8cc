"""One equivalence worker process: `python -m agen.filters.equivalence_worker` (started by
`equivalence_pool.EquivalencePool`, never by hand).

Frames on fd 1 (4-byte big-endian length + pickle): first `(True, "ready")` once the imports are
done, then for each `(tally, answer)` in, `(True, tally)` with the answer counted, or `(False, error)`. Anything else written to stdout goes to stderr instead, so
a library's print cannot corrupt a frame. A fresh interpreter, not a fork: nothing of the parent
(its threads, its event loop, its `__main__`) comes along.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import sys

_LEN = struct.Struct(">I")


def _read_exactly(f, n: int) -> bytes | None:  # type: ignore[no-untyped-def]
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it ends the workers
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)  # a comparison grinding for seconds must not take the core from the event loop
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = os.fdopen(os.dup(0), "rb")
    from agen.gen import vote  # noqa: F401  (the class the frames carry)

    with contextlib.suppress(ImportError):
        import math_verify  # noqa: F401  (warm: the first comparison should not pay the import)
    ready = pickle.dumps((True, "ready"))
    out.write(_LEN.pack(len(ready)) + ready)  # imports done: time limits start counting now
    out.flush()
    while (head := _read_exactly(inp, _LEN.size)) is not None:
        body = _read_exactly(inp, _LEN.unpack(head)[0])
        if body is None:
            return
        try:
            tally, answer = pickle.loads(body)
            tally.add(answer)
            reply = pickle.dumps((True, tally), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # a comparison that fails is undecidable, not a dead worker
            reply = pickle.dumps((False, f"{type(exc).__name__}: {exc}"[:300]))
        out.write(_LEN.pack(len(reply)) + reply)
        out.flush()


if __name__ == "__main__":
    serve()
