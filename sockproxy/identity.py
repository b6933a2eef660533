"""Who is calling: the identity of one client connection.

On a Unix socket the kernel says who connected (``SO_PEERCRED``: pid, uid,
gid; ``SO_PEERGROUPS``: the supplementary groups the process had when it
connected); a client cannot claim to be someone else. On a TLS listener the
identity is the verified client certificate's subject. Names (user, groups,
process) are looked up once per connection, for policy selection and the
audit trail: selection by group uses the kernel's group list, never a label
or header the client could set.
"""

from __future__ import annotations

import grp
import pwd
import socket
import struct
from dataclasses import dataclass
from functools import lru_cache

_UCRED = struct.Struct("3i")
# Linux <asm-generic/socket.h>; Python only names it on newer versions.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_MAX_GROUPS = 256


@dataclass(frozen=True, slots=True)
class Identity:
    listener: str  # the listener's name, as the configuration calls it
    uid: int = -1  # -1 when unknown (TLS, or credentials not available)
    gid: int = -1
    pid: int = 0
    user: str = ""
    groups: tuple[str, ...] = ()  # primary and supplementary group names (or numbers)
    process: str = ""  # /proc/PID/comm at connect time, informational only
    subject: str = ""  # TLS: the client certificate's subject, "CN=ci-1,O=example"
    tenant: str = ""  # whose objects this client may see; set by policy selection

    @property
    def owner(self) -> str:
        """The ownership label value for objects this client creates."""
        if self.tenant:
            return self.tenant
        if self.subject:
            return f"cert:{self.subject}"
        return f"uid:{self.uid}"

    def audit_fields(self) -> dict[str, object]:
        fields: dict[str, object] = {"listener": self.listener}
        if self.subject:
            fields["subject"] = self.subject
        else:
            fields.update(
                uid=self.uid, gid=self.gid, pid=self.pid, user=self.user, process=self.process
            )
            if self.groups:
                fields["groups"] = list(self.groups)
        if self.tenant:
            fields["tenant"] = self.tenant
        return fields


def from_unix_peer(sock: socket.socket | None, listener: str) -> Identity:
    """The identity of a Unix-socket client, from the kernel."""
    if sock is None:
        return Identity(listener)
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return Identity(listener)
    pid, uid, gid = _UCRED.unpack(raw)
    gids = {gid, *_peer_groups(sock)}
    return Identity(
        listener,
        uid=uid,
        gid=gid,
        pid=pid,
        user=user_name(uid),
        groups=tuple(sorted(group_name(g) for g in gids)),
        process=_process_name(pid),
    )


def from_certificate(cert: dict[str, object] | None, listener: str) -> Identity:
    """The identity of a TLS client: its verified certificate's subject."""
    return Identity(listener, subject=certificate_subject(cert) if cert else "")


def certificate_subject(cert: dict[str, object]) -> str:
    """``ssl.SSLSocket.getpeercert()``'s subject as ``CN=...,O=...`` (most
    specific first, the way openssl and Docker print it).

    Values are escaped as RFC 4514 says (``openssl -nameopt RFC2253``): the
    subject names a tenant, so a certificate whose CN is ``a,O=b`` must not
    read the same as one with CN ``a`` and O ``b``.
    """
    rdns: list[str] = []
    subject = cert.get("subject", ())
    assert isinstance(subject, tuple)
    for rdn in reversed(subject):
        rdns.append(
            "+".join(f"{_ATTRIBUTE_NAMES.get(key, key)}={_escape(value)}" for key, value in rdn)
        )
    return ",".join(rdns)


def _escape(value: str) -> str:
    chars = [f"\\{c}" if c in _SPECIAL else "\\00" if c == "\0" else c for c in value]
    if chars and value[0] in "# ":
        chars[0] = f"\\{value[0]}"
    if chars and value[-1] == " ":
        chars[-1] = "\\ "
    return "".join(chars)


_SPECIAL = frozenset('"+,;<>\\')


_ATTRIBUTE_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "emailAddress": "emailAddress",
}


def _peer_groups(sock: socket.socket) -> tuple[int, ...]:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * _MAX_GROUPS)
    except OSError:
        return ()
    return struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4])


def _process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as file:
            return file.read().strip()
    except OSError:
        return ""


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@lru_cache(maxsize=1024)
def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def forget_names() -> None:
    """Look names up afresh (on reload: users and groups may have changed)."""
    user_name.cache_clear()
    group_name.cache_clear()
