"""The systemd units, checked by systemd's own tools; socket activation for real
(systemd-socket-activate, from Debian's systemd package, creates the socket and
starts `sockproxy serve` with it); and the shipped system units run by systemd
itself, sandbox and all, in front of a real engine."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, short_tmpdir
from .dockercli import IMAGE, DockerCLI, describe, engines, wait_until

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


# --------------------------------------------------------------------------- under systemd
#
# No systemd runs as PID 1 on the test machines, and a system manager refuses to
# start anywhere else. A manager in user mode started as root applies the same
# execution sandbox (User=, SupplementaryGroups=, seccomp, capability sets, mount
# namespaces, MemoryDenyWriteExecute=), so the shipped system units run under one,
# fenced in so that it sees and touches nothing of the machine's own:
#
# * a cgroup of its own, entered before a cgroup namespace whose cgroup2 mount is
#   all the manager sees (at the root of a hybrid or legacy hierarchy a manager
#   would move every process on the machine into its init.scope);
# * a private mount namespace whose /run is a test directory (so RuntimeDirectory=
#   resolves to $XDG_RUNTIME_DIR/sockproxy = /run/sockproxy as under PID 1), with
#   the engine's socket bind-mounted on /run/docker.sock, the shipped upstream, and
#   a file on /dev/kmsg for the manager's own log.

SYSTEM_PYTHON = "/usr/bin/python3"
SYSTEMD = "/lib/systemd/systemd"
# Run by `sh -e` under unshare: $0 the test's /run, $1 the engine socket, $2 the log,
# $3 systemd, $4 and $5 the test's own mount and cgroup namespaces, which these mounts
# must never reach. /run/systemd/system is how a manager knows that systemd booted.
BOOT = """
if [ "$(readlink /proc/self/ns/mnt)" = "$4" ] || [ "$(readlink /proc/self/ns/cgroup)" = "$5" ]
then echo "boot: not in private namespaces" >&2; exit 1; fi
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount --bind "$0" /run
mount --bind "$1" /run/docker.sock
mount --bind "$2" /dev/kmsg
mkdir -p /run/systemd/system
exec "$3" --user --unit=sockproxy-test.target --log-target=kmsg
"""


def _system_venv(run: Path) -> None:
    """/run/venv: a venv of the system Python (the service can't read /root's pyenv)
    that sees this checkout and its dependencies, with a sockproxy script, as
    docs/systemd.md's `python3 -m venv /opt/sockproxy` would give."""
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert version == [str(part) for part in sys.version_info[:2]], (
        f"{SYSTEM_PYTHON} is {'.'.join(version)}: the checkout's compiled dependencies "
        f"need Python {sys.version_info[0]}.{sys.version_info[1]}"
    )
    venv = run / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", where], capture_output=True, text=True, check=True
    ).stdout.strip()
    checkout = sysconfig.get_path("purelib")  # this venv's: the editable sockproxy and its deps
    Path(purelib, "sockproxy-checkout.pth").write_text(
        f"import site; site.addsitedir({checkout!r})\n"
    )
    script = venv / "bin" / "sockproxy"
    script.write_text(
        "#!/run/venv/bin/python\nimport sys\nfrom sockproxy.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)


def _own_cgroup(prefix: str) -> Path:
    """A new cgroup under this process's own one in the cgroup2 hierarchy."""
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        found = [line.split() for line in mounts if " - cgroup2 " in line]
    assert found, "no cgroup2 hierarchy mounted"
    mount = found[0][4]
    own = next(
        line[3:].strip()
        for line in Path("/proc/self/cgroup").read_text().splitlines()
        if line.startswith("0::")
    )
    return Path(tempfile.mkdtemp(prefix=prefix, dir=mount + own))


def _remove_cgroup(cgroup: Path) -> None:
    """Kill whatever is left in it (nothing, when the manager exited), then remove it."""
    if (cgroup / "cgroup.kill").exists():
        (cgroup / "cgroup.kill").write_text("1")
    nested = sorted(
        (path for path in cgroup.rglob("*") if path.is_dir()), key=lambda p: len(p.parts)
    )
    deadline = time.monotonic() + 10
    for directory in [*reversed(nested), cgroup]:
        while directory.exists():
            try:
                directory.rmdir()
            except OSError:  # EBUSY while the last processes are reaped
                assert time.monotonic() < deadline, f"cannot remove {directory}"
                time.sleep(0.1)


class Manager:
    """A systemd manager (user mode, run as root), fenced in as described above."""

    def __init__(self, run: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.run = run  # the namespace's /run, seen from here
        self.proc = proc
        self.log = log

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["systemctl", "--user", "--no-pager", *args],
            env={**os.environ, "XDG_RUNTIME_DIR": str(self.run)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def show(self, unit: str, prop: str) -> str:
        res = self.systemctl("show", "--value", "-p", prop, unit)
        assert res.returncode == 0, describe(res)
        return res.stdout.strip()

    def logs(self) -> str:
        service = self.run / "sockproxy.log"
        parts = [f"--- manager ---\n{self.log.read_text(errors='replace')[-4000:]}"]
        if service.exists():
            parts.append(f"--- sockproxy ---\n{service.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


@contextlib.contextmanager
def _group_access(path: str, group: str) -> Iterator[None]:
    """The engine socket readable and writable by `group` (the unit's SupplementaryGroups=)."""
    before = os.stat(path)
    os.chown(path, -1, grp.getgrnam(group).gr_gid)
    os.chmod(path, (before.st_mode & 0o777) | 0o060)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.chown(path, -1, before.st_gid)
            os.chmod(path, before.st_mode & 0o777)


@pytest.fixture
def manager(engine: engines.Engine) -> Iterator[Manager]:
    """The shipped system units, loaded by a real systemd in front of `engine`.

    Changed from the shipped files: ExecStart's binary (/run/venv/bin/sockproxy) and
    policy (policies/default.yaml), and a drop-in sending the output to
    /run/sockproxy.log (there is no journal here). Nothing else."""
    _ensure_accounts()
    directory = Path(short_tmpdir("spu-"))
    run, units = directory / "run", directory / "units"
    run.mkdir(mode=0o755)
    units.mkdir()
    _system_venv(run)
    service = (UNITS / "sockproxy.service").read_text()
    service = service.replace("/usr/local/bin/sockproxy", "/run/venv/bin/sockproxy")
    service = service.replace("/etc/sockproxy/policy.yaml", str(REPO / "policies" / "default.yaml"))
    (units / "sockproxy.service").write_text(service)
    shutil.copy(UNITS / "sockproxy.socket", units / "sockproxy.socket")
    (units / "sockproxy.service.d").mkdir()
    (units / "sockproxy.service.d" / "test-log.conf").write_text(
        "[Service]\nStandardOutput=append:/run/sockproxy.log\nStandardError=inherit\n"
    )
    (units / "sockproxy-test.target").write_text("[Unit]\nDescription=an idle start\n")
    (run / "docker.sock").touch()  # the mount point for the engine's socket
    log = directory / "manager.log"
    log.touch()
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "XDG_RUNTIME_DIR": "/run",
        "SYSTEMD_UNIT_PATH": f"{units}:",  # ours first, then systemd's (exit.target and co.)
        "LANG": "C.UTF-8",
    }
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        stack.enter_context(_group_access(engine.socket, "docker"))
        cgroup = _own_cgroup("sockproxy-test-")
        stack.callback(_remove_cgroup, cgroup)
        namespaces = ["unshare", "--cgroup", "--mount", "--propagation", "private"]
        ours = [os.readlink(f"/proc/self/ns/{kind}") for kind in ("mnt", "cgroup")]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [*namespaces, "sh", "-ec", BOOT, str(run), engine.socket, str(log), SYSTEMD, *ours],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                preexec_fn=lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid())),
            )
        stack.callback(_stop_manager, proc)
        found = Manager(run, proc, log)
        deadline = time.monotonic() + 30
        while found.systemctl("show", "-p", "Version").returncode:
            assert proc.poll() is None, f"the manager exited {proc.returncode}\n{found.logs()}"
            assert time.monotonic() < deadline, found.logs()
            time.sleep(0.1)
        # A user manager's notify socket is its user's alone; PID 1's is 0777.
        (run / "systemd" / "notify").chmod(0o777)
        res = found.systemctl("start", "sockproxy.socket")
        assert res.returncode == 0, describe(res) + found.logs()
        yield found
        res = found.systemctl("stop", "sockproxy.socket", "sockproxy.service")
        assert res.returncode == 0, describe(res) + found.logs()
        assert not (run / "sockproxy" / "docker.sock").exists(), "RemoveOnStop= left the socket"


def _stop_manager(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the manager stops its units and exits (exit.target)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def test_the_shipped_units_run_sockproxy_hardened_under_systemd(
    manager: Manager, tmp_path: Path
) -> None:
    sock = manager.run / "sockproxy" / "docker.sock"
    info = os.stat(sock)
    assert (info.st_mode & 0o777, info.st_uid) == (0o660, 0)
    assert grp.getgrgid(info.st_gid).gr_name == "docker-users"
    # Activation on demand: nothing runs until the first client connects.
    assert manager.show("sockproxy.service", "ActiveState") == "inactive"
    docker = DockerCLI(str(sock), str(tmp_path / "cli"))
    assert docker.ok("version", "--format", "{{.Server.Version}}").strip()
    assert manager.show("sockproxy.service", "ActiveState") == "active"  # Type=notify: READY=1

    pid = int(manager.show("sockproxy.service", "MainPID"))
    status = _status(pid)
    account = pwd.getpwnam("sockproxy")
    assert status["Uid"].split() == [str(account.pw_uid)] * 4, status["Uid"]
    groups = {account.pw_gid, grp.getgrnam("docker").gr_gid}  # its own and the engine's
    assert set(map(int, status["Groups"].split())) == groups, status["Groups"]
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # SystemCallFilter=, MemoryDenyWriteExecute= and co.
    assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0
    own_mounts = os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink(
        f"/proc/{manager.proc.pid}/ns/mnt"
    )
    assert own_mounts, "no mount namespace of its own: ProtectSystem=/PrivateTmp= not applied"

    # Python, uvloop and aiohttp under the whole sandbox, the policy enforced.
    assert docker.ok("run", "--rm", IMAGE, "echo", "hardened").strip() == "hardened"
    res = docker("run", "--rm", "--privileged", IMAGE, "true")
    assert res.returncode != 0, describe(res)
    assert "(rule no-privileged, policy default)" in res.stderr, describe(res)

    # systemctl reload: SIGHUP, the policy reloaded, the same process still serving.
    res = manager.systemctl("reload", "sockproxy.service")
    assert res.returncode == 0, describe(res) + manager.logs()
    log = manager.run / "sockproxy.log"
    wait_until(lambda: '"why": "SIGHUP"' in log.read_text(), 10, "the reload logged")
    assert docker.ok("version", "--format", "{{.Server.Version}}").strip()
    assert int(manager.show("sockproxy.service", "MainPID")) == pid

    # Stopping the service leaves the socket to systemd; the next client starts it again.
    res = manager.systemctl("stop", "sockproxy.service")
    assert res.returncode == 0, describe(res) + manager.logs()
    assert sock.exists(), "stopping sockproxy removed the socket systemd owns"
    assert manager.show("sockproxy.service", "ActiveState") == "inactive"
    docker.ok("ps")  # queued on the socket while sockproxy starts
    assert manager.show("sockproxy.service", "ActiveState") == "active"
    assert int(manager.show("sockproxy.service", "MainPID")) != pid
