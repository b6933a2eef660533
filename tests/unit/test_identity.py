"""Who is calling: the kernel's word on a Unix socket, the certificate on TLS."""

from __future__ import annotations

import grp
import os
import pwd
import socket
from pathlib import Path

from sockproxy.identity import Identity, certificate_subject, from_certificate, from_unix_peer

OUR_PROCESS = Path(f"/proc/{os.getpid()}/comm").read_text().strip()


def test_a_unix_peer_is_identified_by_the_kernel() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    with ours, theirs:
        who = from_unix_peer(ours, "local")
    assert (who.uid, who.gid, who.pid) == (os.getuid(), os.getgid(), os.getpid())
    assert who.user == pwd.getpwuid(os.getuid()).pw_name
    assert grp.getgrgid(os.getgid()).gr_name in who.groups
    for gid in os.getgroups():  # supplementary groups, from SO_PEERGROUPS
        assert grp.getgrgid(gid).gr_name in who.groups
    assert who.process == OUR_PROCESS
    assert who.listener == "local"
    assert who.owner == f"uid:{os.getuid()}"


def test_without_a_socket_nobody_is_identified() -> None:
    who = from_unix_peer(None, "local")
    assert (who.uid, who.user, who.groups) == (-1, "", ())


CERT = {
    "subject": (
        (("countryName", "DE"),),
        (("organizationName", "example"),),
        (("commonName", "runner-1"),),
    )
}


def test_a_certificate_subject_reads_most_specific_first() -> None:
    assert certificate_subject(CERT) == "CN=runner-1,O=example,C=DE"
    who = from_certificate(CERT, "remote")
    assert who.subject == "CN=runner-1,O=example,C=DE"
    assert who.owner == "cert:CN=runner-1,O=example,C=DE"
    assert who.uid == -1  # never a Unix identity


def test_audit_fields_hold_the_identity_only() -> None:
    unix = Identity("local", uid=1, gid=2, pid=3, user="u", groups=("g",), process="p")
    assert unix.audit_fields() == {
        "listener": "local", "uid": 1, "gid": 2, "pid": 3, "user": "u", "process": "p",
        "groups": ["g"],
    }  # fmt: skip
    tls = Identity("remote", subject="CN=x", tenant="ci")
    assert tls.audit_fields() == {"listener": "remote", "subject": "CN=x", "tenant": "ci"}
    assert tls.owner == "ci"  # a tenant set by a rule wins
