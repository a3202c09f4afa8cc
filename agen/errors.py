"""agen's one exception tree; provider and storage failures are translated into it in one place.

    AgenError
     ├── ConfigError          bad config or seed file: nothing has been sent
     ├── StorageError         disk full, EIO, failed fsync: stop cleanly, resumable
     ├── SimStartError        the built-in simulator could not start (port in use, bad sim config)
     ├── Stopped              the run stopped sending before this task finished: leave it uncommitted
     └── ProviderError        a model endpoint said no
          ├── RetryableError
          │    ├── ThrottledError      429 rate limit: slow the whole lane, retry
          │    ├── CapacityError       5xx, 529, resets, timeouts: jittered backoff, retry
          │    └── BadResponseError    200 without a usable body: limited retry
          ├── FatalRunError      401, 403, 402, insufficient_quota, billing: stop the run
          │    └── EndpointUnreachableError  transport failures only, for a window: stop (exit 6)
          └── TaskFailedError    400, 413, context overflow, or retries exhausted: record, go on

Only `agen.providers` raises ProviderError subclasses; the pipeline catches FatalRunError
(stop) and TaskFailedError (record the task as failed) and nothing else.
"""

from __future__ import annotations

from typing import Any


class AgenError(Exception):
    """Base of every error agen raises on purpose."""


class ConfigError(AgenError):
    """A config or seed file is wrong; the message names the file, the path in it, and the fix."""


class StorageError(AgenError):
    """Writing the run directory failed; the message names the path."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class SimStartError(AgenError):
    """The built-in simulated provider did not come up; the message is one line with the cause."""
class Stopped(AgenError):
    """The run stopped sending (first Ctrl-C or SIGTERM) before this task could finish: it is left
    uncommitted, and what it already paid for is journaled so a resume does not pay for it again."""


class ProviderError(AgenError):
    """An endpoint refused or broke a call. Carries what a person needs to look it up."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [f"{self.provider or 'provider'} model={self.model!r}"]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return f"{' '.join(parts)}: {self.message}"


class RetryableError(ProviderError):
    """Worth another attempt; `retry_after_s` is the server's own wish, if it said one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class ThrottledError(RetryableError):
    """429 rate limit: the lane, not just this task, must slow down."""


class CapacityError(RetryableError):
    """Server overloaded or connection lost: retry with jittered exponential backoff."""


class BadResponseError(RetryableError):
    """HTTP 200 whose body cannot be used (unparseable, no choices, an error inside)."""


class FatalRunError(ProviderError):
    """Credentials, permission, quota or billing: no call can succeed, stop the run."""


class TaskFailedError(ProviderError):
    """This request can never succeed (or ran out of retries): record the task as failed."""


class EndpointUnreachableError(FatalRunError):
    """Every attempt to one endpoint failed at transport level (refused, reset, DNS, TLS, timeout)
    for the model's `unreachable_after_s` (or `unreachable_after_attempts` in a row): stop the run,
    resumable. `exit_code` is the CLI's code for "stopped: endpoint unreachable"."""

    exit_code = 6


class EndpointFailingError(FatalRunError):
    """Every answer of one endpoint was a server error (5xx, not 429) for the model's
    `failing_after_s`: an outage, not bad luck. Stop the run, resumable, instead of failing every
    task once its retries are spent. Exit code 6, like an unreachable endpoint."""

    exit_code = 6


class WireError(Exception):
    """A 200 body that cannot be used; `usage` (an `agen.types.Usage`) is whatever billing it still
    reported. Defined here, not in `providers/wire` where it is raised: that module is compiled
    (`agen/native.py`), and an interpreted class (`providers/reward._BadBody`) cannot subclass a
    compiled one."""

    def __init__(self, message: str, usage: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.usage = usage
        self.code = code


class HttpProtocolError(ConnectionError):
    """The server's bytes were not an HTTP/1.1 response the lean client can read
    (`providers/http1`). Defined here, not there: the compiled connection that raises it
    (`providers/http1_conn`) cannot define a subclass of a built-in exception."""
