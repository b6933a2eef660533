"""Audit stage: one structured event per request, via structlog.

Events never carry request bodies, query strings or credential headers:
callers pass only the fields of ``record``. Lines are JSON by default (one
object per line, for journald and log shippers) or a console format.

Request events are written in batches (at most ``FLUSH_DELAY`` late) rather
than with a write per request: on the hot path the write syscall cost more
than the relay itself. Warnings and errors are written at once, and the
buffer is flushed at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FLUSH_DELAY = 0.2  # seconds an info line may wait in the buffer


class BatchingWriter:
    """A structlog logger that batches info and debug lines."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def _later(self, line: str) -> None:
        self._pending.append(line)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(FLUSH_DELAY, self.flush)

    def _now(self, line: str) -> None:
        self._pending.append(line)
        self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._pending.append("")
            self._stream.write("\n".join(self._pending))
            self._pending.clear()
            self._stream.flush()

    debug = info = msg = _later
    warning = error = critical = exception = _now


_writer = BatchingWriter(sys.stderr)


class _IsoStamper:
    """UTC ISO-8601 timestamps; formats each second once (structlog's
    TimeStamper formats every event, a measurable cost per request)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event


def configure(fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog for JSON lines (default) or a readable console format."""
    # One writer for the process, pointed at the new stream: loggers bound
    # before (structlog caches them on first use) write there too.
    _writer.flush()
    _writer._stream = stream or sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _IsoStamper(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *args: _writer,
        cache_logger_on_first_use=True,
    )


def flush() -> None:
    """Write out any batched lines (at shutdown)."""
    _writer.flush()


log = structlog.get_logger("sockproxy")


def record(
    *,
    method: str,
    path: str,
    operation: str,
    allowed: bool,
    rule: str | None,
    warnings: list[dict[str, str]],
    status: int | None,
    duration: float,
    bytes_in: int,
    bytes_out: int,
    policy: str,
    policy_digest: str = "",
    reason: str = "",
    identity: Mapping[str, object] | None = None,
    engine_ms: float | None = None,
) -> None:
    """Emit the audit event for one finished request."""
    emit = log.info if allowed and not warnings else log.warning
    emit(
        "request",
        method=method,
        path=path,
        operation=operation,
        decision="allow" if allowed else "deny",
        rule=rule,
        **({"reason": reason} if not allowed else {}),
        status=status,
        **({"warnings": warnings} if warnings else {}),
        duration_ms=round(duration * 1000, 3),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        policy=policy,
        policy_digest=policy_digest,
        **({"engine_ms": round(engine_ms * 1000, 3)} if engine_ms is not None else {}),
        **(identity or {}),
    )
