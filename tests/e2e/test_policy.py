"""The shipped default policy, enforced between the real Docker CLI and real engines.

Every refusal is checked three ways: the CLI fails, its error names the rule
(so failing for another reason can't pass), and the engine shows nothing was
created. Allowed runs are checked against what the engine actually created.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Proxy
from .dockercli import IMAGE, DockerCLI, describe, unique

pytestmark = pytest.mark.e2e


@pytest.fixture
def allowed_dir() -> Iterator[str]:
    """A directory under /tmp, where the default policy allows binds."""
    path = tempfile.mkdtemp(prefix="sp-bind-", dir="/tmp")
    with open(os.path.join(path, "hello.txt"), "w") as f:
        f.write("from the host\n")
    yield path
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


def assert_refused(res: object, rule: str) -> None:
    assert getattr(res, "returncode", 0) != 0, describe(res)  # type: ignore[arg-type]
    stderr = getattr(res, "stderr", "")
    assert "Error response from daemon: sockproxy: " in stderr, describe(res)  # type: ignore[arg-type]
    assert f"(rule {rule}, policy default)" in stderr, describe(res)  # type: ignore[arg-type]


def assert_no_container(direct_docker: DockerCLI, name: str) -> None:
    listed = direct_docker.ok("ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Names}}")
    assert listed.strip() == "", f"the engine created {name} although it was refused"


RUN_REFUSALS = {
    "privileged": (["--privileged"], "no-privileged"),
    "host root bind": (["-v", "/:/host"], "bind-mount-paths"),
    "etc via --mount": (["--mount", "type=bind,src=/etc,dst=/e"], "bind-mount-paths"),
    "SYS_ADMIN": (["--cap-add", "SYS_ADMIN"], "default-capabilities"),
    "pid host": (["--pid", "host"], "no-host-namespaces"),
    "seccomp unconfined": (["--security-opt", "seccomp=unconfined"], "confined"),
}


@pytest.mark.parametrize(("flags", "rule"), RUN_REFUSALS.values(), ids=RUN_REFUSALS.keys())
def test_host_access_is_refused_and_never_created(
    guarded_docker: DockerCLI, direct_docker: DockerCLI, flags: list[str], rule: str
) -> None:
    name = unique("refused")
    res = guarded_docker("run", "--rm", "--name", name, *flags, IMAGE, "true")
    assert_refused(res, rule)
    assert_no_container(direct_docker, name)


def api(socket_path: str, method: str, path: str, body: object = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    """One raw API request (for roads the CLI can't take against every engine)."""
    import http.client
    import socket

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(socket_path)

    conn = UnixConnection("localhost", timeout=60)
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, (json.loads(data) if data.strip() else {})


def test_device_passthrough_is_refused(guarded: Proxy, direct_docker: DockerCLI) -> None:
    """(The Docker CLI can't send --device to Podman: it needs an OSType Podman doesn't send.)"""
    name = unique("refused")
    status, body = api(
        guarded.socket,
        "POST",
        f"/v1.41/containers/create?name={name}",
        {
            "Image": IMAGE,
            "Cmd": ["true"],
            "HostConfig": {
                "Devices": [
                    {
                        "PathOnHost": "/dev/null",
                        "PathInContainer": "/dev/x",
                        "CgroupPermissions": "rwm",
                    }
                ]
            },
        },
    )
    assert status == 403, body
    assert body["message"].endswith("(rule no-devices, policy default)"), body
    assert_no_container(direct_docker, name)


@pytest.mark.parametrize(
    "host_config",
    [
        {"privileged": True},
        {"Privileged": False, "privileged": True},
        {"Binds": ["/:/host"], "binds": []},
    ],
    ids=["lower-case key", "case-variant duplicate", "binds spelt twice"],
)
def test_spelling_tricks_are_refused(
    guarded: Proxy,
    direct_docker: DockerCLI,
    host_config: dict,  # type: ignore[type-arg]
) -> None:
    name = unique("refused")
    status, body = api(
        guarded.socket,
        "POST",
        f"/v1.41/containers/create?name={name}",
        {"Image": IMAGE, "Cmd": ["true"], "HostConfig": host_config},
    )
    assert status in (400, 403), body
    assert body["message"].startswith("sockproxy: "), body
    assert_no_container(direct_docker, name)


def test_docker_socket_bind_is_refused(guarded_docker: DockerCLI, direct_docker: DockerCLI) -> None:
    name = unique("refused")
    res = guarded_docker(
        "run",
        "--rm",
        "--name",
        name,
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        IMAGE,
        "true",
    )
    assert_refused(res, "bind-mount-paths")
    assert_no_container(direct_docker, name)


def test_engine_socket_under_an_allowed_dir_is_refused(
    guarded: Proxy, guarded_docker: DockerCLI, direct_docker: DockerCLI
) -> None:
    """The engine's own socket lives under /tmp here: allowed by path, refused as a socket."""
    assert guarded.engine.socket.startswith("/tmp/")
    for source in (guarded.engine.socket, os.path.dirname(guarded.engine.socket)):
        name = unique("refused")
        res = guarded_docker("run", "--rm", "--name", name, "-v", f"{source}:/s", IMAGE, "true")
        assert_refused(res, "no-engine-socket")
        assert_no_container(direct_docker, name)


def test_privileged_exec_is_refused(guarded_docker: DockerCLI, direct_docker: DockerCLI) -> None:
    name = unique("exec")
    guarded_docker.ok("run", "-d", "--name", name, IMAGE, "sleep", "60")
    try:
        res = guarded_docker("exec", "--privileged", name, "true")
        assert_refused(res, "no-privileged")
        assert guarded_docker.ok("exec", name, "echo", "plain") == "plain\n"
    finally:
        direct_docker("rm", "-f", name)


def test_volume_binding_the_host_root_is_refused(
    guarded_docker: DockerCLI, direct_docker: DockerCLI
) -> None:
    name = unique("vol")
    res = guarded_docker(
        "volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=/", name
    )
    assert_refused(res, "bind-mount-paths")
    listed = direct_docker.ok("volume", "ls", "--format", "{{.Name}}").split()
    assert name not in listed


def test_ordinary_runs_pass_and_the_engine_created_what_policy_allowed(
    guarded_docker: DockerCLI, direct_docker: DockerCLI, allowed_dir: str
) -> None:
    """Differential check: inspect, on the engine itself, what an allowed create made."""
    volume = unique("data")
    name = unique("ok")
    out = guarded_docker.ok(
        "run",
        "--name",
        name,
        "-v",
        f"{volume}:/data",
        "-v",
        f"{allowed_dir}:/in:ro",
        "--cap-add",
        "NET_BIND_SERVICE",
        IMAGE,
        "cat",
        "/in/hello.txt",
    )
    try:
        assert out == "from the host\n"
        info = json.loads(direct_docker.ok("inspect", name))[0]
        host = info["HostConfig"]
        assert not host.get("Privileged")
        binds = [m["Source"] for m in info["Mounts"] if m["Type"] == "bind"]
        assert binds == [allowed_dir], info["Mounts"]
        assert not host.get("Devices")
        assert set(host.get("CapAdd") or []) <= {"NET_BIND_SERVICE", "CAP_NET_BIND_SERVICE"}
        assert host.get("PidMode") in ("", "private", None)
    finally:
        direct_docker("rm", "-f", name)
        direct_docker("volume", "rm", "-f", volume)


def test_unknown_endpoint_is_refused(guarded: Proxy) -> None:
    status, body = api(guarded.socket, "GET", "/v1.41/no/such/endpoint")
    assert status == 403
    assert body["message"].startswith("sockproxy: endpoint not recognised")
    assert "(rule endpoint-not-recognised, policy default)" in body["message"]


def test_legacy_build_is_allowed_on_docker_and_refused_on_podman_without_isolation(
    guarded_docker: DockerCLI, kind: str, tmp_path: Path
) -> None:
    """docker build (legacy builder) sends no nsoptions: Podman would run RUN steps in
    the host's network namespace, Docker in a bridge network."""
    (tmp_path / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN echo built > /built\n")
    tag = f"localhost/{unique('built')}:latest"
    res = guarded_docker("build", "-t", tag, str(tmp_path), env={"DOCKER_BUILDKIT": "0"})
    if kind == "docker":
        assert res.returncode == 0, describe(res)
        assert guarded_docker.ok("run", "--rm", tag, "cat", "/built") == "built\n"
        guarded_docker("rmi", "-f", tag)
    else:
        assert_refused(res, "no-build-host-access")


def test_a_bind_swapped_for_a_symlink_before_start_is_refused(
    guarded_docker: DockerCLI, direct_docker: DockerCLI, allowed_dir: str
) -> None:
    """Binds are checked at create, but mounted at start, following symlinks again: the
    start is decided again on the mounts the engine holds, resolved as the host is now."""
    data = os.path.join(allowed_dir, "data")
    os.mkdir(data)
    name = unique("swap")
    guarded_docker.ok("create", "--name", name, "-v", f"{data}:/data", IMAGE, "ls", "/data")
    try:
        os.rmdir(data)
        os.symlink("/", data)
        res = guarded_docker("start", "-a", name)
        assert_refused(res, "bind-mount-paths")
        assert "as the engine holds it at start" in res.stderr
        state = direct_docker.ok("inspect", "--format", "{{.State.Status}}", name).strip()
        assert state in ("created", "configured"), state
    finally:
        direct_docker("rm", "-f", name)


def test_an_ordinary_start_passes_the_fresh_check(
    guarded_docker: DockerCLI, direct_docker: DockerCLI, allowed_dir: str
) -> None:
    name = unique("start")
    guarded_docker.ok(
        "create", "--name", name, "-v", f"{allowed_dir}:/in:ro", IMAGE, "cat", "/in/hello.txt"
    )
    try:
        assert guarded_docker.ok("start", "-a", name) == "from the host\n"
    finally:
        direct_docker("rm", "-f", name)
