"""Errors that end a request, and the one place they become HTTP responses.

Every refusal or failure reaches the client as a Docker-style JSON error
(``{"message": "..."}``) so that the Docker CLI prints
``Error response from daemon: <message>``.
"""

from __future__ import annotations

import json
from http import HTTPStatus


class ProxyError(Exception):
    """A request ends with ``status`` and a JSON ``message``."""

    status: int = 500
    close: bool = True  # whether the client connection must be closed after it

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FramingError(ProxyError):
    """Malformed or ambiguous HTTP framing: the connection cannot be trusted."""

    status = 400


class HeadTooLarge(FramingError):
    status = 431


class BodyTooLarge(ProxyError):
    status = 413


class EngineUnreachable(ProxyError):
    """No connection to the engine could be made (or it died before answering)."""

    status = 502
    close = False


class EngineProtocolError(ProxyError):
    """The engine answered with something that is not valid HTTP."""

    status = 502


def error_response(status: int, message: str, *, close: bool) -> bytes:
    """Serialise a Docker-style JSON error response; the message always says
    it comes from sockproxy, never from the engine."""
    if not message.startswith("sockproxy: "):
        message = f"sockproxy: {message}"
    body = json.dumps({"message": message}).encode() + b"\n"
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Server: sockproxy\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode("ascii") + body
