"""The systemd units, checked by systemd's own tools, and socket activation for
real: systemd-socket-activate (Debian's systemd package) creates the socket and
starts `sockproxy serve` with it, in front of a real engine."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, short_tmpdir
from .dockercli import IMAGE, DockerCLI, describe, engines

UNITS = REPO / "systemd"
SOCKPROXY = Path(sys.executable).with_name("sockproxy")  # the venv's console script


def _installed_copy(directory: Path, units: list[Path]) -> list[str]:
    """The units with ExecStart pointing at this checkout's sockproxy (verify wants it to exist)."""
    copies = []
    for unit in units:
        text = unit.read_text()
        text = text.replace("/usr/local/bin/sockproxy", str(SOCKPROXY))
        text = text.replace("%h/.local/bin/sockproxy", str(SOCKPROXY))
        copy = directory / unit.name
        copy.write_text(text)
        copies.append(str(copy))
    return copies


def _ensure_accounts() -> None:
    """The user and groups the system units name (what docs/systemd.md has admins create)."""
    for group in ("docker-users", "docker"):
        if subprocess.run(["getent", "group", group], capture_output=True).returncode:
            subprocess.run(["groupadd", "--system", group], check=True)
    if subprocess.run(["getent", "passwd", "sockproxy"], capture_output=True).returncode:
        subprocess.run(["useradd", "--system", "--no-create-home", "sockproxy"], check=True)


def test_system_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    _ensure_accounts()
    units = _installed_copy(tmp_path, [UNITS / "sockproxy.socket", UNITS / "sockproxy.service"])
    res = subprocess.run(
        ["systemd-analyze", "verify", *units], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, describe(res)
    assert res.stdout.strip() == "", describe(res)
    assert res.stderr.strip() == "", describe(res)


def test_user_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    units = _installed_copy(
        tmp_path, [UNITS / "user" / "sockproxy.socket", UNITS / "user" / "sockproxy.service"]
    )
    res = subprocess.run(
        ["systemd-analyze", "--user", "verify", *units],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert res.returncode == 0, describe(res)
    assert res.stderr.strip() == "", describe(res)


def test_the_service_is_hardened(tmp_path: Path) -> None:
    """systemd's own exposure score: 1.0 ("OK") when written; never above 2.0."""
    _ensure_accounts()
    (unit,) = _installed_copy(tmp_path, [UNITS / "sockproxy.service"])
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", res.stdout)
    assert found, describe(res)
    assert float(found.group(1)) <= 2.0, describe(res)
    text = (UNITS / "sockproxy.service").read_text()
    for setting in (
        "User=sockproxy",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_UNIX",
        "SystemCallFilter=@system-service",
        "After=sockproxy.socket network.target podman.socket docker.service",
    ):
        assert setting in text


class Activated:
    """`sockproxy serve` started by systemd-socket-activate on a socket it made."""

    def __init__(self, socket_path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.socket = socket_path
        self.proc = proc
        self.log = log


@pytest.fixture(params=["flags", "config"])
def activated(
    request: pytest.FixtureRequest, engine: engines.Engine, tmp_path: Path
) -> Iterator[Activated]:
    """Socket activation, with the flags (the shipped unit) or a config's `systemd:` listener."""
    directory = short_tmpdir("sps-")
    sock = os.path.join(directory, "docker.sock")
    policy = str(REPO / "policies" / "default.yaml")
    if request.param == "flags":
        serve = ["--policy", policy, "--upstream", f"unix://{engine.socket}"]
    else:
        config = Path(directory, "config.yaml")
        config.write_text(
            f"upstream: unix://{engine.socket}\n"
            f"policies: {{default: {policy}}}\n"
            "listeners:\n  - name: activated\n    systemd: docker\n    policy: default\n"
        )
        serve = ["--config", str(config)]
    log = tmp_path / "sockproxy.log"
    notify = os.path.join(directory, "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(notify)
    receiver.settimeout(30)
    argv = [
        "systemd-socket-activate", f"--listen={sock}", "--fdname=docker",
        f"--setenv=NOTIFY_SOCKET={notify}",
        str(SOCKPROXY), "serve", "--nested-dir", os.path.join(directory, "nested"), *serve,
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield Activated(sock, proc, log)
        # Activation on first use: by now sockproxy runs and said READY=1.
        assert receiver.recv(100) == b"READY=1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
        assert receiver.recv(100) == b"STOPPING=1"
        assert os.path.exists(sock), "sockproxy removed the socket systemd owns"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        receiver.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_socket_activation_serves_the_docker_cli_under_policy(
    activated: Activated, tmp_path: Path
) -> None:
    docker = DockerCLI(activated.socket, str(tmp_path / "cli"))
    assert docker.ok("version", "--format", "{{.Server.Version}}").strip()
    assert docker.ok("run", "--rm", IMAGE, "echo", "activated").strip() == "activated"
    res = docker("run", "--rm", "--privileged", IMAGE, "true")
    assert res.returncode != 0, describe(res)
    assert "(rule no-privileged, policy default)" in res.stderr, describe(res)
    listening = [
        line for line in activated.log.read_text().splitlines() if '"event": "listening"' in line
    ]
    assert listening
    assert activated.socket in listening[0]
