"""Classify stage: method + request target -> a named endpoint.

In: the method and the raw request target. Out: a ``Route`` naming the
operation (``container.attach``, ``exec.start``, ``system.ping``...), its
API flavour (Docker-compatible or libpod), its section, and whether the
engine may hijack the connection for it. The version prefix is stripped and
the path cleaned the way the engines' routers see it before matching.
"""

from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote


class Api(Enum):
    DOCKER = "docker"
    LIBPOD = "libpod"


@dataclass(frozen=True, slots=True)
class Route:
    operation: str  # stable dotted name; "unknown" when nothing matched
    section: str
    api: Api
    path: str  # cleaned path without version prefix or query
    query: str
    version: str | None
    hijack: bool  # the engine may answer with 101 or a raw stream

    @property
    def known(self) -> bool:
        return self.operation != "unknown"


@dataclass(frozen=True, slots=True)
class _Pattern:
    method: str
    segments: tuple[str, ...]  # "*" matches one path segment
    operation: str
    api: Api | None  # None: both flavours
    hijack: bool = False

    @property
    def section(self) -> str:
        return self.operation.split(".", 1)[0]


def _p(method: str, path: str, operation: str, api: Api | None = None, **kw: bool) -> _Pattern:
    segments = tuple("*" if s.startswith("{") else s for s in path.strip("/").split("/"))
    return _Pattern(method, segments, operation, api, **kw)


# The endpoints the forwarding core must know about; the policy catalogue
# extends this table. Paths are written without the /vX.Y or /libpod prefix.
_PATTERNS: tuple[_Pattern, ...] = (
    _p("GET", "/_ping", "system.ping"),
    _p("HEAD", "/_ping", "system.ping"),
    _p("GET", "/version", "system.version"),
    _p("GET", "/info", "system.info"),
    _p("GET", "/events", "system.events"),
    _p("POST", "/containers/{id}/attach", "container.attach", hijack=True),
    _p("POST", "/exec/{id}/start", "exec.start", hijack=True),
    _p("POST", "/session", "build.session", Api.DOCKER, hijack=True),
    _p("POST", "/grpc", "build.grpc", Api.DOCKER, hijack=True),
)

_INDEX: dict[tuple[str, int], tuple[_Pattern, ...]] = {}
for _pattern in _PATTERNS:
    _key = (_pattern.method, len(_pattern.segments))
    _INDEX[_key] = (*_INDEX.get(_key, ()), _pattern)

# Docker's router: "/v{version:[0-9.]+}" (moby api/server/router). Podman
# accepts the same shape for its compat and libpod routes.
_VERSION = re.compile(r"/v([0-9][0-9.]*)(?=/)")


def clean_path(path: str) -> str:
    """Clean a path the way Go's path.Clean does (``//``, ``.``, ``..``)."""
    cleaned = posixpath.normpath(path)
    # normpath keeps a leading "//" (POSIX allows it); Go's Clean does not.
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


@functools.lru_cache(maxsize=4096)  # pure, and targets repeat
def classify(method: str, target: str) -> Route:
    """Name the endpoint a request is for."""
    raw_path, _, query = target.partition("?")
    path = clean_path(unquote(raw_path))
    version = None
    match = _VERSION.match(path)
    if match is not None:
        version = match.group(1)
        path = path[match.end() :]
    api = Api.DOCKER
    if path == "/libpod" or path.startswith("/libpod/"):
        api = Api.LIBPOD
        path = path[len("/libpod") :] or "/"
    segments = tuple(path.strip("/").split("/"))
    for pattern in _INDEX.get((method, len(segments)), ()):
        if pattern.api not in (None, api):
            continue
        if all(p == "*" or p == s for p, s in zip(pattern.segments, segments, strict=True)):
            return Route(
                pattern.operation, pattern.section, api, path, query, version, pattern.hijack
            )
    return Route("unknown", "unknown", api, path, query, version, False)
