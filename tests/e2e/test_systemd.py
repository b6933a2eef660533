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
import select
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
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


def test_the_user_service_is_hardened(tmp_path: Path) -> None:
    """The user unit's exposure score: 1.4 when written; never above 2.0. PrivateUsers=
    is what lets a user manager apply the rest (the test under systemd below shows it)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    (unit,) = _installed_copy(tmp_path, [UNITS / "user" / "sockproxy.service"])
    res = subprocess.run(
        ["systemd-analyze", "--user", "security", "--offline=yes", unit],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", res.stdout)
    assert found, describe(res)
    assert float(found.group(1)) <= 2.0, describe(res)
    assert "PrivateUsers=yes\n" in (UNITS / "user" / "sockproxy.service").read_text()


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
# start anywhere else. A manager in user mode applies the same execution sandbox
# (User=, SupplementaryGroups=, seccomp, capability sets, mount namespaces,
# MemoryDenyWriteExecute=): started as root it runs the shipped system units, started
# as an unprivileged user the user units. Either is fenced in so that it sees and
# touches nothing of the machine's own:
#
# * a cgroup of its own (delegated to the user), entered before a cgroup namespace
#   whose cgroup2 mount is all the manager sees (at the root of a hybrid or legacy
#   hierarchy a manager would move every process on the machine into its init.scope);
# * a private mount namespace whose /run is a test directory (for root,
#   RuntimeDirectory= resolves to $XDG_RUNTIME_DIR/sockproxy = /run/sockproxy as
#   under PID 1), with the engine's socket bind-mounted where the units expect it,
#   and a FIFO on /dev/kmsg for the manager's own log.

SYSTEM_PYTHON = "/usr/bin/python3"
SYSTEMD = "/lib/systemd/systemd"
DEVELOPER = "sockproxy-e2e"  # the workstation user of the user units
# Run by `sh -e` under unshare: $0 the test's /run, $1 the engine socket, $2 where the
# units expect it, $3 the FIFO for the manager's log, $4 and $5 the test's own mount
# and cgroup namespaces, which these mounts must never reach, then the manager's
# command line. /run/systemd/system is how a manager knows that systemd booted;
# /run/systemd/unit-root, which PID 1 would have made, is where services' mount
# namespaces are assembled (a user manager can't create it).
BOOT = """
if [ "$(readlink /proc/self/ns/mnt)" = "$4" ] || [ "$(readlink /proc/self/ns/cgroup)" = "$5" ]
then echo "boot: not in private namespaces" >&2; exit 1; fi
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount --bind "$0" /run
mount --bind "$1" "$2"
mount --bind "$3" /dev/kmsg
mkdir -p /run/systemd/system /run/systemd/unit-root
shift 5
exec "$@"
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
    # A copy of what sockproxy imports (its own package and the venv's packages it
    # uses): the checkout may sit under /tmp, which PrivateTmp= hides from the service.
    probe = (
        "import sys, sockproxy.cli, sockproxy.service, uvloop\n"
        "print(*(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)))"
    )
    files = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    roots = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), str(REPO)}
    tops = {
        (root, file[len(root) + 1 :].split("/")[0])
        for file in files
        for root in roots
        if file.startswith(root + "/")
    }
    for root, top in sorted(tops):
        for name in (top, f"{top}.libs"):
            source = Path(root, name)
            if source.is_dir():
                shutil.copytree(source, Path(purelib, name), dirs_exist_ok=True)
            elif source.is_file():
                shutil.copy2(source, Path(purelib, name))
    _script(venv / "bin" / "sockproxy")


def _script(path: Path) -> None:
    """A sockproxy command running /run/venv's Python."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/run/venv/bin/python\nimport sys\nfrom sockproxy.cli import main\nsys.exit(main())\n"
    )
    path.chmod(0o755)


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
    """A systemd manager in user mode, fenced in as described above."""

    def __init__(
        self,
        run: Path,
        runtime: Path,
        proc: subprocess.Popen[bytes],
        log: Path,
        as_user: list[str],
    ) -> None:
        self.run = run  # the namespace's /run, seen from here
        self.runtime = runtime  # its $XDG_RUNTIME_DIR, seen from here
        self.proc = proc
        self.log = log
        self.service_log = runtime / "sockproxy.log"  # the log drop-in's
        self.as_user = as_user  # a user manager answers its own user only

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, "systemctl", "--user", "--no-pager", *args],
            env={**os.environ, "XDG_RUNTIME_DIR": str(self.runtime)},
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
        parts = [f"--- manager ---\n{self.log.read_text(errors='replace')[-4000:]}"]
        if self.service_log.exists():
            text = self.service_log.read_text(errors="replace")
            parts.append(f"--- sockproxy ---\n{text[-4000:]}")
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


class _Kmsg:
    """The manager's /dev/kmsg: a FIFO copied in order into its log by a thread (each
    process opens /dev/kmsg anew, without O_APPEND: a plain file would be overwritten)."""

    def __init__(self, fifo: Path, log: Path, owner: pwd.struct_passwd | None) -> None:
        os.mkfifo(fifo, 0o600)
        if owner is not None:
            os.chown(fifo, owner.pw_uid, owner.pw_gid)
        self._fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # never at EOF
        self._log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._copy, name="kmsg", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        with self._log.open("ab", buffering=0) as out:
            while not self._stop.is_set():
                if select.select([self._fd], [], [], 0.1)[0]:
                    with contextlib.suppress(BlockingIOError):
                        out.write(os.read(self._fd, 65536))
            with contextlib.suppress(BlockingIOError):
                out.write(os.read(self._fd, 65536))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self._fd)


@contextlib.contextmanager
def _run_manager(
    engine: engines.Engine,
    directory: Path,
    *,
    engine_at: str,
    runtime: str = "/run",
    user: pwd.struct_passwd | None = None,
    home: str = "/root",
) -> Iterator[Manager]:
    """A manager for the units in `directory`/units, with the engine's socket on
    `engine_at`, $XDG_RUNTIME_DIR `runtime` and $HOME `home` (paths in its /run), as
    root or as `user`; stopped (SIGTERM: it stops its units and exits) afterwards."""
    run, units, log = directory / "run", directory / "units", directory / "manager.log"
    (units / "sockproxy-test.target").write_text("[Unit]\nDescription=an idle start\n")
    (units / "podman.socket").symlink_to("/dev/null")  # masked: the engine is the test's
    target = run / os.path.relpath(engine_at, "/run")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch()  # the mount point for the engine's socket
    log.touch()
    kmsg = directory / "kmsg"
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "XDG_RUNTIME_DIR": runtime,
        "HOME": home,
        "SYSTEMD_UNIT_PATH": f"{units}:",  # ours first, then systemd's (exit.target and co.)
        "LANG": "C.UTF-8",
    }
    command = [SYSTEMD, "--user", "--unit=sockproxy-test.target", "--log-target=kmsg"]
    as_user: list[str] = []
    with contextlib.ExitStack() as stack:
        cgroup = _own_cgroup("sockproxy-test-")
        stack.callback(_remove_cgroup, cgroup)
        stack.callback(_Kmsg(kmsg, log, user).close)
        if user is not None:  # a cgroup delegated to the user
            for path in (cgroup, *(cgroup / name for name in ("cgroup.procs", "cgroup.threads",
                         "cgroup.subtree_control"))):  # fmt: skip
                os.chown(path, user.pw_uid, user.pw_gid)
            as_user = [
                "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"
            ]  # fmt: skip
            command = [*as_user, *command]
        namespaces = ["unshare", "--cgroup", "--mount", "--propagation", "private"]
        ours = [os.readlink(f"/proc/self/ns/{kind}") for kind in ("mnt", "cgroup")]
        boot = [BOOT, str(run), engine.socket, engine_at, str(kmsg), *ours]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [*namespaces, "sh", "-ec", *boot, *command],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                preexec_fn=lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid())),
            )
        stack.callback(_stop_manager, proc)
        found = Manager(run, run / os.path.relpath(runtime, "/run"), proc, log, as_user)
        deadline = time.monotonic() + 30
        while found.systemctl("show", "-p", "Version").returncode:
            assert proc.poll() is None, f"the manager exited {proc.returncode}\n{found.logs()}"
            assert time.monotonic() < deadline, found.logs()
            time.sleep(0.1)
        yield found


def _installed_for_test(unit: Path, copy: Path, replacements: dict[str, str]) -> None:
    text = unit.read_text()
    for old, new in replacements.items():
        assert old in text, f"{unit.name} no longer names {old}"
        text = text.replace(old, new)
    copy.write_text(text)


def _log_drop_in(units: Path, log: str) -> None:
    """The service's output in `log`: there is no journal here."""
    (units / "sockproxy.service.d").mkdir()
    (units / "sockproxy.service.d" / "test-log.conf").write_text(
        f"[Service]\nStandardOutput=append:{log}\nStandardError=inherit\n"
    )


@pytest.fixture
def manager(engine: engines.Engine) -> Iterator[Manager]:
    """The shipped system units, run by systemd as root in front of `engine`.

    Changed from the shipped files: ExecStart's binary (/run/venv/bin/sockproxy) and
    policy (a copy of policies/default.yaml), and the log drop-in. Nothing else."""
    _ensure_accounts()
    directory = Path(short_tmpdir("spu-"))
    run, units = directory / "run", directory / "units"
    run.mkdir(mode=0o755)
    units.mkdir()
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        _system_venv(run)
        # A copy the service can read: the checkout may sit under /tmp (PrivateTmp=).
        etc = run / "etc-sockproxy"
        etc.mkdir(mode=0o755)
        shutil.copy(REPO / "policies" / "default.yaml", etc / "policy.yaml")
        _installed_for_test(
            UNITS / "sockproxy.service",
            units / "sockproxy.service",
            {
                "/usr/local/bin/sockproxy": "/run/venv/bin/sockproxy",
                "/etc/sockproxy/policy.yaml": "/run/etc-sockproxy/policy.yaml",
            },
        )
        shutil.copy(UNITS / "sockproxy.socket", units / "sockproxy.socket")
        _log_drop_in(units, "/run/sockproxy.log")
        stack.enter_context(_group_access(engine.socket, "docker"))
        found = stack.enter_context(_run_manager(engine, directory, engine_at="/run/docker.sock"))
        # A user manager's notify socket is its user's alone; PID 1's is 0777.
        (run / "systemd" / "notify").chmod(0o777)
        res = found.systemctl("start", "sockproxy.socket")
        assert res.returncode == 0, describe(res) + found.logs()
        yield found
        res = found.systemctl("stop", "sockproxy.socket", "sockproxy.service")
        assert res.returncode == 0, describe(res) + found.logs()
        assert not (run / "sockproxy" / "docker.sock").exists(), "RemoveOnStop= left the socket"


def _ensure_developer() -> pwd.struct_passwd:
    """The workstation user: a member of the group of the engine's socket, which
    stands in for their own rootless Podman's."""
    if subprocess.run(["getent", "passwd", DEVELOPER], capture_output=True).returncode:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--groups", "docker", DEVELOPER],
            check=True,
        )
    subprocess.run(["usermod", "--append", "--groups", "docker", DEVELOPER], check=True)
    return pwd.getpwnam(DEVELOPER)


@pytest.fixture
def user_manager(engine: engines.Engine) -> Iterator[Manager]:
    """The shipped user units, run by the developer's own systemd in front of `engine`,
    installed as docs/systemd.md says (~/.local/bin/sockproxy, the workstation policy in
    ~/.config/sockproxy, the units unchanged) plus the log drop-in."""
    _ensure_accounts()
    developer = _ensure_developer()
    directory = Path(short_tmpdir("spv-"))
    directory.chmod(0o755)  # the units are read by the developer's manager
    run, units = directory / "run", directory / "units"
    runtime, home = f"/run/user/{developer.pw_uid}", "/run/home"
    run.mkdir(mode=0o755)
    units.mkdir()

    def owned(path: Path) -> Path:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for below in [path, *path.rglob("*")]:
            os.chown(below, developer.pw_uid, developer.pw_gid, follow_symlinks=False)
        return path

    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        _system_venv(run)
        here = owned(run / "home")
        _script(here / ".local" / "bin" / "sockproxy")
        config = here / ".config" / "sockproxy"
        config.mkdir(parents=True)
        for name in ("default.yaml", "workstation.yaml"):
            shutil.copy(REPO / "policies" / name, config / name)
        (config / "policy.yaml").symlink_to("workstation.yaml")
        owned(here)
        (run / os.path.relpath(runtime, "/run") / "podman").mkdir(parents=True)
        owned(run / os.path.relpath(runtime, "/run"))
        for name in ("sockproxy.socket", "sockproxy.service"):
            shutil.copy(UNITS / "user" / name, units / name)
        _log_drop_in(units, "%t/sockproxy.log")
        stack.enter_context(_group_access(engine.socket, "docker"))
        found = stack.enter_context(
            _run_manager(
                engine,
                directory,
                engine_at=f"{runtime}/podman/podman.sock",
                runtime=runtime,
                user=developer,
                home=home,
            )
        )
        res = found.systemctl("start", "sockproxy.socket")
        assert res.returncode == 0, describe(res) + found.logs()
        yield found
        res = found.systemctl("stop", "sockproxy.socket", "sockproxy.service")
        assert res.returncode == 0, describe(res) + found.logs()
        assert not (found.runtime / "sockproxy" / "docker.sock").exists()


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


def test_the_user_units_run_sockproxy_for_a_developer_under_their_own_systemd(
    user_manager: Manager, tmp_path: Path
) -> None:
    developer = pwd.getpwnam(DEVELOPER)
    sock = user_manager.runtime / "sockproxy" / "docker.sock"
    info = os.stat(sock)
    assert (info.st_mode & 0o777, info.st_uid) == (0o600, developer.pw_uid)
    assert user_manager.show("sockproxy.service", "ActiveState") == "inactive"
    docker = DockerCLI(str(sock), str(tmp_path / "cli"))
    assert docker.ok("version", "--format", "{{.Server.Version}}").strip()
    assert user_manager.show("sockproxy.service", "ActiveState") == "active"

    pid = int(user_manager.show("sockproxy.service", "MainPID"))
    status = _status(pid)
    assert status["Uid"].split() == [str(developer.pw_uid)] * 4, status["Uid"]
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    assert int(status["CapEff"], 16) == 0
    own_mounts = os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink(
        f"/proc/{user_manager.proc.pid}/ns/mnt"
    )
    assert own_mounts, "no mount namespace of its own: ProtectSystem=/PrivateTmp= not applied"

    assert docker.ok("run", "--rm", IMAGE, "echo", "workstation").strip() == "workstation"
    res = docker("run", "--rm", "--privileged", IMAGE, "true")
    assert res.returncode != 0, describe(res)
    assert "(rule no-privileged, policy workstation)" in res.stderr, describe(res)

    res = user_manager.systemctl("stop", "sockproxy.service")
    assert res.returncode == 0, describe(res) + user_manager.logs()
    assert sock.exists(), "stopping sockproxy removed the socket systemd owns"
