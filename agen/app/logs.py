"""structlog setup: human-readable on a terminal, one JSON object per line otherwise."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import IO

import orjson
import structlog

from agen.errors import StorageError

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _CurrentStderr:
    """sys.stderr as it is at each write: while the live table runs, rich redirects it so a log line
    prints above the table instead of tearing it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", *, json: bool | None = None, file: Path | None = None) -> None:
    """Logs go to stderr so stdout stays for the summary; JSON when stderr is not a terminal, and
    always JSON, appended, when `file` is given (then stderr gets only the final line)."""
    if file is not None:
        try:
            stream: IO[bytes] = open(file, "ab", buffering=0)  # noqa: SIM115 - lives as long as the process
        except OSError as exc:
            raise StorageError(f"cannot open the log file {file}: {exc.strerror}", str(file)) from None
        json = True
    else:
        stream = sys.stderr.buffer
    if json is None:
        json = not sys.stderr.isatty()
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:
        processors += [structlog.processors.dict_tracebacks,
                       structlog.processors.JSONRenderer(serializer=orjson.dumps)]
        factory: structlog.types.WrappedLogger = structlog.BytesLoggerFactory(stream)
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
        factory = structlog.PrintLoggerFactory(_CurrentStderr())  # type: ignore[arg-type]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
