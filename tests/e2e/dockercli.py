"""The real Docker CLI as the e2e tests drive it: one-shot runs, line streams, cleanup."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import shlex
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

import engines as engines  # noqa: E402  (scripts/ is not a package; re-exported)

DOCKER_CLI = "/usr/local/bin/docker"
IMAGE = engines.BUSYBOX_IMAGE


def unique(prefix: str) -> str:
    """A fresh object name, so tests never collide with each other or earlier runs."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class DockerCLI:
    """/usr/local/bin/docker bound to one socket and one private config directory."""

    host: str  # the socket path
    config_dir: str
    default_timeout: float = 120.0
    user: str | None = None  # run as this Unix user (its own uid, gid and groups)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(
            DOCKER_HOST=f"unix://{self.host}",
            DOCKER_CONFIG=self.config_dir,
            DOCKER_CLI_HINTS="false",
            LANG="C.UTF-8",
        )
        env.update(extra or {})
        return env

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI to completion; stdin is /dev/null unless `input` is given."""
        return subprocess.run(
            [*self._as_user(), DOCKER_CLI, *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env(env),
            cwd=cwd,
            timeout=timeout or self.default_timeout,
            check=False,
        )

    def _as_user(self) -> list[str]:
        if self.user is None:
            return []
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", "--"]

    def ok(self, *args: str, **kwargs: object) -> str:
        """Run the CLI, assert exit status 0, return stdout."""
        res = self(*args, **kwargs)  # type: ignore[arg-type]
        assert res.returncode == 0, describe(res)
        return res.stdout

    def popen(self, *args: str, env: dict[str, str] | None = None) -> LineStream:
        """Start a long-running CLI command whose stdout is read line by line."""
        proc = subprocess.Popen(
            [*self._as_user(), DOCKER_CLI, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=self.env(env),
        )
        return LineStream(proc)


def describe(res: subprocess.CompletedProcess[str]) -> str:
    """A failure message naming the command, its status and its output."""
    argv = res.args if isinstance(res.args, list) else [str(res.args)]
    return (
        f"`{shlex.join(str(a) for a in argv)}` exited {res.returncode}\n"
        f"--- stdout ---\n{res.stdout[-3000:] if res.stdout else ''}\n"
        f"--- stderr ---\n{res.stderr[-3000:] if res.stderr else ''}"
    )


class LineStream:
    """A running process whose stdout lines are collected by a thread, each with its
    arrival time (wall clock, comparable with the engine's container timestamps)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[tuple[float, str | None]] = queue.Queue()
        self.stderr = ""
        self._out = threading.Thread(target=self._read_out, daemon=True)
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out.start()
        self._err.start()

    @property
    def command(self) -> str:
        args = self.proc.args
        return shlex.join(map(str, args)) if isinstance(args, list) else str(args)

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.time(), line.rstrip("\n")))
        self.lines.put((time.time(), None))  # EOF

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def next_line(self, timeout: float) -> tuple[float, str | None]:
        """(arrival time, line), or (time, None) at EOF; fails the test on timeout."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output line within {timeout}s from `{self.command}`")

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> tuple[float, str]:
        """Read lines until one satisfies `predicate`; return (arrival time, line)."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                at, line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self.lines.put((at, None))
                break
            seen.append(line)
            if predicate(line):
                return at, line
        pytest.fail(
            f"no matching line within {timeout}s from `{self.command}`;"
            f" saw {seen[-20:]!r}; exit status {self.proc.poll()}; stderr {self.stderr[-2000:]!r}"
        )

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{self.command}` did not end within {timeout}s")
        self._err.join(timeout=10)
        self._out.join(timeout=10)
        return code

    def close(self) -> None:
        """Stop the process if it still runs, and release its pipes."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._err.join(timeout=10)
        self._out.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


class Containers:
    """Names for containers a test creates; all are force-removed when the test ends."""

    def __init__(self, docker: DockerCLI) -> None:
        self.docker = docker
        self.names: list[str] = []

    def name(self, prefix: str = "e2e") -> str:
        n = unique(prefix)
        self.names.append(n)
        return n

    def run_detached(self, *args: str, prefix: str = "e2e") -> str:
        """`docker run -d --name N ARGS...`; returns N after asserting success."""
        n = self.name(prefix)
        out = self.docker.ok("run", "-d", "--name", n, *args)
        assert len(out.strip()) == 64, out
        return n

    def remove_all(self) -> None:
        if self.names:
            self.docker("rm", "-f", *self.names, timeout=120)


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll `predicate()` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def run_many(
    cmds: Sequence[Sequence[str]], docker: DockerCLI, timeout: float
) -> list[subprocess.CompletedProcess[str]]:
    """Start all CLI commands at once; wait for all; results in order."""
    procs = [
        subprocess.Popen(
            [DOCKER_CLI, *c],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=docker.env(),
        )
        for c in cmds
    ]
    results = []
    deadline = time.monotonic() + timeout
    for p, c in zip(procs, cmds, strict=True):
        try:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                with contextlib.suppress(OSError):
                    q.kill()
            pytest.fail(f"`docker {shlex.join(c)}` did not finish within {timeout}s")
        results.append(subprocess.CompletedProcess([DOCKER_CLI, *c], p.returncode, out, err))
    return results


# --------------------------------------------------------------------------- raw API, figures


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX socket: keep-alive requests from the test process itself,
    for tests that need the raw status codes and bodies (or many requests cheaply)."""

    def __init__(self, path: str, timeout: float = 60.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def call(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """One request on this (kept-alive) connection; `body` other than bytes goes as JSON."""
        hdrs = dict(headers or {})
        data: bytes | None
        if body is None or isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        self.request(method, path, body=data, headers=hdrs)
        resp = self.getresponse()
        return resp.status, resp.read()


def error_message(body: bytes) -> str:
    """The `message` of a Docker-style JSON error body (or the raw text when it is not one)."""
    try:
        msg = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace")
    return str(msg)


def open_fds(pid: int) -> int:
    """How many file descriptors process `pid` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    """Resident set size of process `pid` in KiB (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS line for pid {pid}")


def drain_engine_pool(proxy_socket: str, count: int = 8) -> None:
    """Close the proxy's idle kept-alive engine connections: each `Connection: close` request
    takes one from its pool, and the engine then closes it. Each response is read to EOF, so
    the proxy has closed that client connection too. Afterwards the proxy holds no engine
    connection, and its descriptor count is comparable across a test."""
    request = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
    for _ in range(count):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(proxy_socket)
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), f"/_ping through the proxy: {answer[:300]!r}"


def steady_fds(pid: int, timeout: float = 5.0) -> int:
    """The descriptor count of `pid` once it stopped changing (three equal readings 0.1 s
    apart), so connections still closing are not counted."""
    readings = [open_fds(pid)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (len(readings) >= 3 and len(set(readings[-3:])) == 1):
        time.sleep(0.1)
        readings.append(open_fds(pid))
    return readings[-1]


def record_figures(base: Path, key: str, figures: dict[str, object]) -> None:
    """Print measured figures (visible with -s) and merge them into BASE/figures.json."""
    print(f"\n{key}: {json.dumps(figures, sort_keys=True)}")
    path = base / "figures.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[key] = figures
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"(recorded in {path})")
