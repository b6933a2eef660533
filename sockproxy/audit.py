"""Audit stage: one structured event per request, via structlog.

Events never carry request bodies or credential headers; callers pass only
the fields below.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(fmt: str = "json", level: str = "info") -> None:
    """Set up structlog for JSON lines (default) or a readable console format."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


log = structlog.get_logger("sockproxy")


def record(
    *,
    method: str,
    path: str,
    operation: str,
    allowed: bool,
    rule: str | None,
    status: int | None,
    duration: float,
    bytes_in: int,
    bytes_out: int,
    policy: str,
) -> None:
    """Emit the audit event for one finished request."""
    emit = log.info if allowed else log.warning
    emit(
        "request",
        method=method,
        path=path,
        operation=operation,
        decision="allow" if allowed else "deny",
        rule=rule,
        status=status,
        duration_ms=round(duration * 1000, 3),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        policy=policy,
    )
