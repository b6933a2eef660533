"""Limits that keep one client from starving the others: sizes, times,
connection counts. Long-lived streams (logs -f, events, attach, exec,
builds, pulls) have no time limit while their request is in flight: only
reading a request head or an inspected body is timed, and idle keep-alive.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    head_bytes: int = 256 * 1024  # largest request head
    body_bytes: int = 4 * 1024 * 1024  # largest body read whole for inspection
    head_timeout: float = 30.0  # seconds to receive a head (and an inspected body)
    idle_timeout: float = 300.0  # seconds a keep-alive connection may sit idle
    max_connections: int = 1024  # open client connections in all
    max_connections_per_uid: int = 256  # per client user (kernel peer credentials)
