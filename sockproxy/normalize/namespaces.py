"""Namespace modes in one model: host, joined container, joined path, private, other.

Two spellings reach the engines:

* strings (Docker ``HostConfig.PidMode``/``IpcMode``/``NetworkMode``/``UTSMode``/
  ``UsernsMode``/``CgroupnsMode``, read by Podman's compat API too): ``host``,
  ``container:ID``, Podman's ``ns:/proc/PID/ns/net``, and the private spellings.
  Docker compares exactly (moby api/types/container ``IsHost``, ``IsContainer``);
  Podman parses with pkg/specgen/namespaces.go ``ParseNamespace``,
  ``ParseIPCNamespace``, ``ParseUserNamespace`` and ``ParseNetworkFlag``.
* libpod objects ``{"nsmode": "host"|"path"|"container"|..., "value": ...}``
  (pkg/specgen/namespaces.go ``Namespace``).

Only exact ``host`` is the host: Docker reads ``HOST`` as a network name (or
refuses it), and Podman refuses it. Anything the model cannot place is OTHER
with the raw text as target, so a check can still see it.
"""

from __future__ import annotations

from sockproxy.model import Namespace, NamespaceMode
from sockproxy.normalize.fields import Fields

# The engine's own namespace for the container, whatever it is called.
_PRIVATE = frozenset({"", "private", "default", "shareable", "none", "bridge"})
# Network modes that are not a named network: Podman's user-mode stacks and pods.
_NET_OTHER_PREFIXES = ("slirp4netns", "pasta", "pod")


def from_text(kind: str, text: str, origin: str) -> Namespace | None:
    """A mode string as both engines read it; ``None`` when not given."""
    if not text:
        return None
    mode, target = _text_mode(kind, text)
    return Namespace(kind, mode, target, origin)


def _text_mode(kind: str, text: str) -> tuple[NamespaceMode, str]:
    if text == "host":
        return NamespaceMode.HOST, text
    if text.startswith("container:"):
        return NamespaceMode.CONTAINER, text.removeprefix("container:")
    if text.startswith("ns:"):
        return NamespaceMode.PATH, text.removeprefix("ns:")
    if text in _PRIVATE:
        return NamespaceMode.PRIVATE, text
    if kind == "net":
        if text.split(":", 1)[0] in _NET_OTHER_PREFIXES:
            return NamespaceMode.OTHER, text
        # A named network: the container still gets a namespace of its own.
        return NamespaceMode.PRIVATE, text
    return NamespaceMode.OTHER, text  # pod, keep-id, auto, nomap, or refused by the engine


def from_libpod(kind: str, fields: Fields) -> Namespace | None:
    """A libpod ``{"nsmode", "value"}`` object; ``None`` when absent or empty."""
    nsmode = fields.text("nsmode")
    value = fields.text("value")
    if not nsmode and not value:
        return None
    origin = fields.origin()
    if nsmode == "host":
        return Namespace(kind, NamespaceMode.HOST, "host", origin)
    if nsmode == "path":
        return Namespace(kind, NamespaceMode.PATH, value, origin)
    if nsmode == "container":
        return Namespace(kind, NamespaceMode.CONTAINER, value, origin)
    raw = f"{nsmode}:{value}" if value else nsmode
    if nsmode in _PRIVATE and not value:
        return Namespace(kind, NamespaceMode.PRIVATE, raw, origin)
    return Namespace(kind, NamespaceMode.OTHER, raw, origin)
