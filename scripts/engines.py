#!/usr/bin/env python3
"""Start and stop private, real container engines for sockproxy's tests and benchmarks.

Each engine (rootful Podman 4.x via ``podman system service``, or Docker Engine
``dockerd``) and the local registry (Debian's ``docker-registry``, i.e.
distribution 2.8) runs with its own directory under /tmp, its own
configuration files and its own API socket; nothing under /etc is read for
storage or written. Every process is recorded by PID and stopped by PID:
``stop()`` never looks processes up by name, because other engines may run on
the same machine. Processes an engine leaves behind (dockerd's containerd and
shims, Podman's conmon and cleanup processes) are found because their command
lines name the engine's private directory.

See docs in /work/shared/docs/real-backends.md for why Podman needs runc and
lower ulimits on this machine.

Importable (``start_podman``, ``start_dockerd``, ``import_busybox``,
``start_registry``) and a CLI::

    python3 scripts/engines.py start podman|docker|registry [--dir D]
        [--insecure-registry HOST:PORT ...]

The CLI prints ``SOCKET=...`` and ``PID=...`` (registry: ``ADDRESS=``,
``USERNAME=``, ``PASSWORD=``) lines, stays in the foreground until SIGTERM or
SIGINT, then stops what it started.

Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType

__all__ = [
    "BUSYBOX_IMAGE",
    "Engine",
    "EngineError",
    "Registry",
    "api_request",
    "import_busybox",
    "start_dockerd",
    "start_engine",
    "start_podman",
    "start_registry",
]

BUSYBOX_IMAGE = "localhost/sockproxy-busybox:latest"
BUSYBOX_APPLETS = (
    *("sh", "ash", "ls", "cat", "echo", "sleep", "id", "true", "false", "wc", "head", "tail"),
    *("dd", "env", "printf", "seq", "grep", "sed", "mkdir", "rm", "cp", "mv", "touch", "date"),
    *("hostname", "uname", "ps", "kill", "sync", "stat", "md5sum", "sha256sum", "test", "yes"),
    *("tr", "cut", "sort", "uniq", "find", "xargs", "basename", "dirname", "pwd", "ln", "chmod"),
    *("du", "df", "mount", "top", "nc", "tty", "stty"),
)
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class EngineError(RuntimeError):
    """An engine or registry could not be started or used."""


# --------------------------------------------------------------------------- HTTP over AF_UNIX


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def api_request(
    sock_path: str,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, bytes]:
    """Send one HTTP request to an engine's API socket; return (status, whole body)."""
    conn = _UnixHTTPConnection(sock_path, timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            hdrs.setdefault("Transfer-Encoding", "chunked")
            conn.request(method, path, body=body, headers=hdrs, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _ping(sock_path: str, timeout: float = 2.0) -> bool:
    try:
        status, _ = api_request(sock_path, "GET", "/_ping", timeout=timeout)
    except (OSError, http.client.HTTPException):
        return False
    return status == 200


# --------------------------------------------------------------------------- processes


def _log_tail(path: str, lines: int = 40) -> str:
    """The end of an engine's log, without its info/debug chatter (dockerd and its
    containerd share one log, and containerd is verbose)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            data = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"
    quiet = ("level=info", "level=debug", '"level":"info"', '"level":"debug"')
    kept = [line for line in data.splitlines() if not any(q in line for q in quiet)]
    return "\n".join(kept[-lines:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (OSError, IndexError):
        return False


def _reap(pid: int) -> None:
    """Collect `pid` if it is our child; ignore it otherwise."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until all `pids` exited (reaping our own children); return those still alive."""
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        for pid in remaining:
            _reap(pid)
        remaining = [p for p in remaining if _pid_alive(p)]
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(0.05)


def _proc_table() -> dict[int, tuple[int, bytes]]:
    """pid -> (ppid, cmdline) for every visible process."""
    table: dict[int, tuple[int, bytes]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError, ValueError):
            continue
        table[pid] = (ppid, cmdline)
    return table


def _owned_processes(workdir: str, roots: Iterable[int], api_socket: str = "") -> list[int]:
    """PIDs that belong to the engine in `workdir`: the `roots`, every process whose
    command line names a path inside `workdir` (conmon, `podman container cleanup`,
    containerd, shims), and all their descendants (the containers' processes).

    Mentions of the API socket do not count: those are the engine's clients (a proxy
    started with --upstream, a docker -H), which are not ours to stop. Neither are this
    process and its ancestors."""
    table = _proc_table()
    marker = os.fsencode(workdir.rstrip("/") + "/")
    sock = os.fsencode(api_socket) if api_socket else b""
    seeds = {p for p in roots if p in table}
    for pid, (_, cmd) in table.items():
        if sock:
            cmd = cmd.replace(sock, b"")
        if marker in cmd:
            seeds.add(pid)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = list(seeds)
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, ()))
    ancestor = os.getpid()
    while ancestor > 1 and ancestor in table:
        found.discard(ancestor)
        ancestor = table[ancestor][0]
    found.discard(1)
    return sorted(found)


def _kill_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _unmount_under(workdir: str) -> None:
    """Lazily unmount every mount point inside `workdir`, deepest first."""
    prefix = workdir.rstrip("/") + "/"
    for _ in range(5):
        points: list[str] = []
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) > 4:
                        mp = parts[4].replace("\\040", " ")
                        if mp.startswith(prefix):
                            points.append(mp)
        except OSError:
            return
        if not points:
            return
        for mp in sorted(set(points), key=len, reverse=True):
            subprocess.run(
                ["umount", "-l", mp],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )


def _terminate(pid: int, workdir: str, timeout: float, api_socket: str = "") -> None:
    """SIGTERM `pid`, wait, SIGKILL; then stop whatever else belongs to `workdir`."""
    leftovers = _owned_processes(workdir, [pid], api_socket)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if _wait_gone([pid], timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone([pid], 10)
    _reap(pid)
    # Children the engine left behind (containerd, shims, conmon, container processes).
    for _ in range(3):
        leftovers = sorted(set(leftovers) | set(_owned_processes(workdir, [], api_socket)))
        leftovers = [p for p in leftovers if _pid_alive(p)]
        if not leftovers:
            break
        _kill_all(leftovers, signal.SIGTERM)
        still = _wait_gone(leftovers, 5)
        _kill_all(still, signal.SIGKILL)
        _wait_gone(still, 5)


def _spawn(argv: list[str], env: dict[str, str], log_path: str) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's ^C reaches our CLI, which stops it cleanly
            close_fds=True,
        )
    finally:
        log.close()


def _private_dir(workdir: str | None) -> tuple[str, bool]:
    if workdir is None:
        return tempfile.mkdtemp(prefix="spe-", dir="/tmp"), True
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    return workdir, False


def _check_socket_path(path: str) -> None:
    if len(os.fsencode(path)) >= 100:
        raise EngineError(f"socket path too long for AF_UNIX ({len(path)} bytes): {path}")


def _require(binary: str) -> str:
    found = shutil.which(binary, path=_SBIN_PATH)
    if not found:
        raise EngineError(f"{binary} not found; run scripts/install-deps.sh")
    return found


# --------------------------------------------------------------------------- engines


@dataclass
class Engine:
    """A running private engine. `socket` is its API socket; `stop()` ends it."""

    kind: str  # "podman" | "docker"
    socket: str
    pid: int
    workdir: str
    log: str = ""
    env: dict[str, str] = field(default_factory=dict)  # environment the engine runs with
    remove_workdir: bool = False
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def podman_argv(self) -> list[str]:
        """`podman` CLI arguments that address this engine's private storage."""
        d = self.workdir
        return [
            "podman",
            "--root", f"{d}/root",
            "--runroot", f"{d}/run",
            "--tmpdir", f"{d}/tmp",
        ]  # fmt: skip

    def _remove_containers(self) -> None:
        """Force-remove every container through the API so nothing outlives the engine.

        `podman system service` does not stop containers when it exits, unlike dockerd.
        """
        try:
            status, body = api_request(self.socket, "GET", "/containers/json?all=1", timeout=20)
            if status != 200:
                return
            for ctr in json.loads(body):
                api_request(
                    self.socket,
                    "DELETE",
                    f"/containers/{ctr['Id']}?force=1&v=1",
                    timeout=30,
                )
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
            pass

    def stop(self) -> None:
        """Stop exactly this engine's processes, unmount its mounts, and (if we
        created it) remove its directory. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if _pid_alive(self.pid):
            self._remove_containers()
        _terminate(self.pid, self.workdir, STOP_TIMEOUT, self.socket)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1)
        _unmount_under(self.workdir)
        with contextlib.suppress(OSError):
            os.unlink(self.socket)
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_ready(engine: Engine, timeout: float = READY_TIMEOUT) -> None:
    """Wait until GET /_ping answers 200; on failure stop the engine and raise with its log."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if engine._proc is not None and engine._proc.poll() is not None:
                code = engine._proc.returncode
                problem = f"exited with status {code} before its API socket answered"
                break
            if os.path.exists(engine.socket) and _ping(engine.socket):
                return
            if time.monotonic() > deadline:
                problem = f"did not answer GET /_ping on {engine.socket} within {timeout:.0f}s"
                break
            time.sleep(0.1)
    except BaseException:  # interrupted (the CLI turns SIGTERM into KeyboardInterrupt)
        engine.stop()
        raise
    tail = _log_tail(engine.log)  # before stop(), which may remove the directory
    engine.stop()
    raise EngineError(f"{engine.kind} {problem}; its log ({engine.log}) ends:\n{tail}")


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def start_podman(
    workdir: str | None = None,
    insecure_registries: list[str] | None = None,
) -> Engine:
    """Start rootful `podman system service` with private storage and configuration.

    containers.conf: runc (crun fails here: "cgroups in hybrid mode not supported"),
    ulimits below this machine's hard limits, cgroupfs (no systemd), k8s-file logs and
    file events (no journald), file locks in the private tmpdir (the default SHM lock
    segment is shared by every Podman on the machine).
    """
    podman = _require("podman")
    d, owned = _private_dir(workdir)
    for sub in ("root", "run", "tmp", "networks"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    sock = os.path.join(d, "podman.sock")
    _check_socket_path(sock)
    runc = _require("runc")
    conf = os.path.join(d, "containers.conf")
    with open(conf, "w", encoding="utf-8") as f:
        f.write(
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            'log_driver = "k8s-file"\n'
            "[network]\n"
            f"network_config_dir = {_toml_str(d + '/networks')}\n"
            "[engine]\n"
            'runtime = "runc"\n'
            f"runtimes = {{ runc = [{_toml_str(runc)}] }}\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            'lock_type = "file"\n'
            f"tmp_dir = {_toml_str(d + '/tmp')}\n"
        )
    storage = os.path.join(d, "storage.conf")
    with open(storage, "w", encoding="utf-8") as f:
        f.write(
            "[storage]\n"
            'driver = "overlay"\n'
            f"graphroot = {_toml_str(d + '/root')}\n"
            f"runroot = {_toml_str(d + '/run')}\n"
        )
    registries = os.path.join(d, "registries.conf")
    with open(registries, "w", encoding="utf-8") as f:
        f.write('unqualified-search-registries = []\nshort-name-mode = "permissive"\n')
        for reg in insecure_registries or []:
            f.write(f"\n[[registry]]\nlocation = {_toml_str(reg)}\ninsecure = true\n")
    env = {
        "PATH": _SBIN_PATH,
        "HOME": d,
        "TMPDIR": os.path.join(d, "tmp"),
        "XDG_RUNTIME_DIR": os.path.join(d, "run"),
        "XDG_CONFIG_HOME": os.path.join(d, "config"),
        "CONTAINERS_CONF": conf,
        "CONTAINERS_STORAGE_CONF": storage,
        "CONTAINERS_REGISTRIES_CONF": registries,
        "LANG": "C.UTF-8",
    }
    log = os.path.join(d, "podman.log")
    engine = Engine("podman", sock, 0, d, log, env, owned)
    argv = [
        podman, *engine.podman_argv()[1:],
        "--log-level", "info",
        "system", "service", "--time=0", f"unix://{sock}",
    ]  # fmt: skip
    proc = _spawn(argv, env, log)
    engine.pid, engine._proc = proc.pid, proc
    _wait_ready(engine)
    return engine


def start_dockerd(
    workdir: str | None = None,
    insecure_registries: list[str] | None = None,
) -> Engine:
    """Start `dockerd` with private data/exec roots and config, no iptables, no bridge.

    dockerd supervises its own containerd (under the exec root) unless a system one
    answers on /run/containerd/containerd.sock.
    """
    dockerd = _require("dockerd")
    _require("runc")
    d, owned = _private_dir(workdir)
    for sub in ("data", "exec", "config"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    sock = os.path.join(d, "docker.sock")
    _check_socket_path(sock)
    config = os.path.join(d, "daemon.json")
    with open(config, "w", encoding="utf-8") as f:
        f.write("{}\n")
    env = {
        "PATH": _SBIN_PATH,
        "HOME": d,
        "TMPDIR": os.path.join(d, "tmp"),
        "DOCKER_CONFIG": os.path.join(d, "config"),
        "LANG": "C.UTF-8",
    }
    os.makedirs(env["TMPDIR"], exist_ok=True)
    argv = [
        dockerd,
        "--host", f"unix://{sock}",
        "--config-file", config,
        "--data-root", f"{d}/data",
        "--exec-root", f"{d}/exec",
        "--pidfile", f"{d}/docker.pid",
        "--iptables=false", "--ip-forward=false", "--ip-masq=false",
        "--bridge=none",
        "--storage-driver", "overlay2",
    ]  # fmt: skip
    for reg in insecure_registries or []:
        argv += ["--insecure-registry", reg]
    log = os.path.join(d, "dockerd.log")
    engine = Engine("docker", sock, 0, d, log, env, owned)
    proc = _spawn(argv, env, log)
    engine.pid, engine._proc = proc.pid, proc
    _wait_ready(engine)
    return engine


def start_engine(
    kind: str, workdir: str | None = None, insecure_registries: list[str] | None = None
) -> Engine:
    """`start_podman` or `start_dockerd` by name ("podman" | "docker")."""
    if kind == "podman":
        return start_podman(workdir, insecure_registries)
    if kind == "docker":
        return start_dockerd(workdir, insecure_registries)
    raise ValueError(f"unknown engine kind {kind!r} (expected 'podman' or 'docker')")


# --------------------------------------------------------------------------- images


def _busybox_tar(busybox: str = "/bin/busybox") -> bytes:
    """A root filesystem: static busybox, applet symlinks, minimal /etc."""
    if not os.path.exists(busybox):
        raise EngineError(f"{busybox} not found; install busybox-static")
    buf = io.BytesIO()
    now = int(time.time())

    def add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
        tar.addfile(info)

    def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, now
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "etc", "dev", "proc", "sys", "root", "var", "usr"):
            add_dir(tar, name)
        add_dir(tar, "tmp", 0o1777)
        with open(busybox, "rb") as f:
            add_file(tar, "bin/busybox", f.read(), 0o755)
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode, info.mtime = (
                tarfile.SYMTYPE, "busybox", 0o777, now,
            )  # fmt: skip
            tar.addfile(info)
        add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        add_file(tar, "etc/group", b"root:x:0:\n")
        add_file(tar, "etc/hostname", b"")
        add_file(tar, "etc/hosts", b"127.0.0.1 localhost\n")
        add_file(tar, "etc/resolv.conf", b"")
    return buf.getvalue()


def image_exists(sock_path: str, name: str) -> bool:
    status, _ = api_request(sock_path, "GET", f"/images/{urllib.parse.quote(name, safe='')}/json")
    return status == 200


def import_tar(sock_path: str, name: str, tar: bytes, changes: Iterable[str] = ()) -> None:
    """POST /images/create?fromSrc=- (what `docker import -` sends) and check the stream."""
    repo, _, tag = name.rpartition(":")
    if "/" in tag or not repo:
        repo, tag = name, "latest"
    query = [("fromSrc", "-"), ("repo", repo), ("tag", tag)]
    query += [("changes", c) for c in changes]
    status, body = api_request(
        sock_path,
        "POST",
        "/images/create?" + urllib.parse.urlencode(query),
        body=tar,
        headers={"Content-Type": "application/x-tar"},
        timeout=300,
    )
    text = body.decode("utf-8", "replace")
    if status != 200:
        raise EngineError(f"import of {name} failed: HTTP {status}: {text[:2000]}")
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            msg = json.loads(line)
            if isinstance(msg, dict) and (msg.get("error") or msg.get("errorDetail")):
                raise EngineError(f"import of {name} failed: {line}")


def import_busybox(engine: Engine, name: str = BUSYBOX_IMAGE) -> None:
    """Make the busybox image `name` in `engine` (through its API socket), unless present."""
    if image_exists(engine.socket, name):
        return
    import_tar(engine.socket, name, _busybox_tar(), changes=['CMD ["/bin/sh"]'])
    if not image_exists(engine.socket, name):
        raise EngineError(f"{engine.kind}: image {name} missing after import")


# --------------------------------------------------------------------------- registry


def _bcrypt(password: str) -> str:
    """bcrypt hash for an htpasswd file (distribution accepts only bcrypt)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # removed in Python 3.13; htpasswd below then

        if crypt.METHOD_BLOWFISH in crypt.methods:
            hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))
            if hashed and hashed.startswith("$2"):
                return hashed
    except ImportError:
        pass
    htpasswd = shutil.which("htpasswd")
    if not htpasswd:
        raise EngineError("no bcrypt available: need Python's crypt module or htpasswd")
    out = subprocess.run(
        [htpasswd, "-nbBC", "10", "x", password], capture_output=True, text=True, check=True
    ).stdout
    return out.strip().split(":", 1)[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    """A running private registry (distribution 2.8) with htpasswd auth over plain HTTP."""

    address: str  # "127.0.0.1:PORT"
    pid: int
    workdir: str
    username: str
    password: str
    log: str = ""
    remove_workdir: bool = False
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def localhost_address(self) -> str:
        """The address as "localhost:PORT": Podman 4.3's /auth (docker login) only skips TLS for
        addresses starting with "localhost:", whatever registries.conf says."""
        return "localhost:" + self.address.rsplit(":", 1)[1]

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        _terminate(self.pid, self.workdir, 10)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1)
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _registry_status(address: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, http.client.HTTPException):
        return None


def start_registry(workdir: str | None = None, username: str = "sockproxy") -> Registry:
    """Start Debian's docker-registry on a free loopback port with filesystem storage
    under `workdir` and htpasswd (bcrypt) auth; distribution allows htpasswd over plain
    HTTP (it only logs a warning)."""
    binary = _require("docker-registry")
    d, owned = _private_dir(workdir)
    os.makedirs(os.path.join(d, "data"), exist_ok=True)
    password = secrets.token_urlsafe(12)
    htpasswd = os.path.join(d, "htpasswd")
    with open(htpasswd, "w", encoding="utf-8") as f:
        f.write(f"{username}:{_bcrypt(password)}\n")
    log = os.path.join(d, "registry.log")
    last_error = ""
    for _attempt in range(5):
        address = f"127.0.0.1:{_free_port()}"
        config = os.path.join(d, "config.yml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(
                "version: 0.1\n"
                "log:\n  level: info\n  accesslog:\n    disabled: false\n"
                "storage:\n"
                f"  filesystem:\n    rootdirectory: {json.dumps(d + '/data')}\n"
                "  delete:\n    enabled: true\n"
                f"http:\n  addr: {address}\n  secret: {secrets.token_hex(16)}\n"
                "auth:\n  htpasswd:\n    realm: sockproxy-e2e\n"
                f"    path: {json.dumps(htpasswd)}\n"
            )
        proc = _spawn([binary, "serve", config], {"PATH": _SBIN_PATH, "HOME": d}, log)
        reg = Registry(address, proc.pid, d, username, password, log, owned, proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if _registry_status(address) in (200, 401):
                return reg
            time.sleep(0.1)
        last_error = _log_tail(log)
        reg.remove_workdir = False
        reg.stop()
    if owned:
        shutil.rmtree(d, ignore_errors=True)
    raise EngineError(f"docker-registry did not start; log ends:\n{last_error}")


# --------------------------------------------------------------------------- CLI


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start an engine and stay in the foreground")
    start.add_argument("kind", choices=["podman", "docker", "registry"])
    start.add_argument("--dir", help="private directory (default: a new /tmp/spe-XXXX)")
    start.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="registry the engine may use over plain HTTP (repeatable)",
    )
    start.add_argument("--no-busybox", action="store_true", help=f"skip importing {BUSYBOX_IMAGE}")
    args = parser.parse_args(argv)

    with _signals_raise():
        target: Engine | Registry | None = None
        try:
            if args.kind == "registry":
                reg = start_registry(args.dir)
                target = reg
                print(f"ADDRESS={reg.address}", f"PID={reg.pid}", f"DIR={reg.workdir}",
                      f"USERNAME={reg.username}", f"PASSWORD={reg.password}",
                      sep="\n", flush=True)  # fmt: skip
            else:
                engine = start_engine(args.kind, args.dir, args.insecure_registry)
                target = engine
                if not args.no_busybox:
                    import_busybox(engine)
                print(f"SOCKET={engine.socket}", f"PID={engine.pid}", f"DIR={engine.workdir}",
                      f"IMAGE={BUSYBOX_IMAGE}", sep="\n", flush=True)  # fmt: skip
            while True:
                signal.pause()
        except KeyboardInterrupt:
            return 0
        except EngineError as exc:
            print(f"engines.py: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            # Ignore further signals while stopping, so a second ^C can't orphan the engine.
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
            if target is not None:
                target.stop()


if __name__ == "__main__":
    sys.exit(main())
