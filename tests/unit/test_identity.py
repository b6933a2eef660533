"""Who is calling: the kernel's word on a Unix socket, the certificate on TLS."""

from __future__ import annotations

import grp
import os
import pwd
import socket
from pathlib import Path
from typing import Any

import pytest

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


CERT: dict[str, object] = {
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


def test_a_client_of_a_listening_unix_socket_is_identified_by_the_kernel(sockdir: Path) -> None:
    path = str(sockdir / "l.sock")
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        server.bind(path)
        server.listen(1)
        client.connect(path)
        accepted, _ = server.accept()
        with accepted:
            who = from_unix_peer(accepted, "local")
    assert (who.uid, who.gid, who.pid) == (os.getuid(), os.getgid(), os.getpid())
    assert who.process == OUR_PROCESS
    expected = {grp.getgrgid(g).gr_name for g in {os.getgid(), *os.getgroups()}}
    assert set(who.groups) == expected
    assert list(who.groups) == sorted(who.groups)


def test_a_socket_without_peer_credentials_identifies_nobody() -> None:
    closed = socket.socket(socket.AF_UNIX)
    closed.close()  # getsockopt fails: no credentials, not a crash
    who = from_unix_peer(closed, "local")
    assert who == Identity("local")
    assert who.owner == "uid:-1"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ((), ""),
        (((("commonName", "x"),),), "CN=x"),
        (
            (
                (("organizationName", "example"),),
                (("organizationalUnitName", "ci"),),
                (("commonName", "runner-1"),),
            ),
            "CN=runner-1,OU=ci,O=example",
        ),
        (
            ((("localityName", "Berlin"),), (("emailAddress", "a@b"),), (("userId", "u1"),)),
            "userId=u1,emailAddress=a@b,L=Berlin",  # unknown attribute names are kept
        ),
        # Values are escaped (RFC 4514): a CN holding ",O=..." is not an O.
        (
            ((("organizationName", "example"),), (("commonName", "a,O=admins"),)),
            r"CN=a\,O=admins,O=example",
        ),
        (((("commonName", 'a+b;c<d>e"f\\g'),),), r"CN=a\+b\;c\<d\>e\"f\\g"),
        (((("commonName", "#lead"),),), r"CN=\#lead"),
        (((("commonName", " both "),),), r"CN=\ both\ "),
        (((("commonName", "nul\0"),),), r"CN=nul\00"),
        # A multi-valued RDN joins with "+", not ",".
        (((("commonName", "a"), ("organizationName", "b")),), "CN=a+O=b"),
    ],
)
def test_certificate_subjects(subject: tuple[Any, ...], expected: str) -> None:
    assert certificate_subject({"subject": subject}) == expected


def test_two_different_certificates_never_read_as_one_subject() -> None:
    """The subject is the tenant: a CN written to look like more of the
    name must not give someone else's owner label."""
    forged: dict[str, object] = {"subject": ((("commonName", "runner-1,O=example"),),)}
    real: dict[str, object] = {
        "subject": ((("organizationName", "example"),), (("commonName", "runner-1"),))
    }
    multi: dict[str, object] = {
        "subject": ((("organizationName", "example"), ("commonName", "runner-1")),)
    }
    owners = {from_certificate(c, "remote").owner for c in (forged, real, multi)}
    assert len(owners) == 3
    assert from_certificate(real, "remote").owner == "cert:CN=runner-1,O=example"


def test_no_certificate_is_no_subject() -> None:
    assert from_certificate(None, "remote") == Identity("remote")


@pytest.mark.parametrize(
    ("who", "owner"),
    [
        (Identity("local", uid=1001), "uid:1001"),
        (Identity("local", uid=0, user="root"), "uid:0"),
        (Identity("remote", subject="CN=a,O=b"), "cert:CN=a,O=b"),
        (Identity("local", uid=1001, tenant="ci"), "ci"),
        (Identity("remote", subject="CN=a", tenant="ci"), "ci"),
    ],
)
def test_owner_values(who: Identity, owner: str) -> None:
    assert who.owner == owner


IDENTITY_FIELDS = {
    "listener",
    "uid",
    "gid",
    "pid",
    "user",
    "groups",
    "process",
    "subject",
    "tenant",
}


@pytest.mark.parametrize(
    "who",
    [
        Identity("local"),
        Identity("local", uid=1, gid=1, pid=9, user="u", process="p"),
        Identity("local", uid=1, groups=("a", "b"), tenant="t"),
        Identity("remote", subject="CN=x"),
        Identity("remote", uid=5, user="u", subject="CN=x"),  # TLS: no Unix fields at all
    ],
)
def test_audit_fields_never_hold_anything_but_identity_fields(who: Identity) -> None:
    fields = who.audit_fields()
    assert set(fields) <= IDENTITY_FIELDS
    assert fields["listener"] == who.listener
    if who.subject:
        assert set(fields) <= {"listener", "subject", "tenant"}
    assert ("groups" in fields) is bool(who.groups and not who.subject)
    assert ("tenant" in fields) is bool(who.tenant)
