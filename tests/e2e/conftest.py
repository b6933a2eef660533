"""Fixtures for the end-to-end tests: the real Docker CLI → sockproxy → a real engine.

* ``registry``: one private distribution 2.8 registry (htpasswd auth, plain HTTP).
* ``engine``: a private rootful Podman and a private dockerd (ids "podman", "docker"),
  started by scripts/engines.py with the busybox test image imported. A missing
  binary or a failed start fails the tests; it never skips them.
* ``proxy``: ``python -m sockproxy serve`` in front of the engine; its teardown
  asserts a clean exit on SIGTERM (status 0, socket removed).
* ``docker``: runs /usr/local/bin/docker against the proxy with a private config.
* ``direct_docker``: the same CLI against the engine socket, for comparisons.

SOCKPROXY_E2E_DIRECT=1 points ``docker`` at the engine itself (a development aid
for the tests, never a way to make them pass). SOCKPROXY_E2E_PROXY_ARGS adds
arguments to ``sockproxy serve`` (shell-quoted), e.g. a ``--policy`` file.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .dockercli import IMAGE, REPO, Containers, DockerCLI, engines

ENGINES = ("podman", "docker")
DIRECT = os.environ.get("SOCKPROXY_E2E_DIRECT") == "1"
PROXY_READY_TIMEOUT = 30.0
PROXY_EXIT_TIMEOUT = 30.0


def short_tmpdir(prefix: str) -> str:
    """A directory short enough for AF_UNIX socket paths (108-byte limit)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


# --------------------------------------------------------------------------- engines


@pytest.fixture(scope="session")
def registry() -> Iterator[engines.Registry]:
    """A private registry with htpasswd auth over plain HTTP on 127.0.0.1."""
    try:
        reg = engines.start_registry()
    except engines.EngineError as exc:
        pytest.fail(f"cannot start the local registry: {exc}")
    yield reg
    reg.stop()


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest, registry: engines.Registry) -> Iterator[engines.Engine]:
    """A private engine of each kind with the busybox image; failures fail, never skip."""
    kind = str(request.param)
    try:
        eng = engines.start_engine(
            kind, insecure_registries=[registry.address, registry.localhost_address]
        )
    except engines.EngineError as exc:
        pytest.fail(f"cannot start {kind}: {exc}")
    try:
        engines.import_busybox(eng)
    except Exception as exc:
        eng.stop()
        pytest.fail(f"cannot import {IMAGE} into {kind}: {exc}")
    yield eng
    eng.stop()


# --------------------------------------------------------------------------- the proxy


@dataclass
class Proxy:
    """The running proxy (or, with SOCKPROXY_E2E_DIRECT=1, the engine socket itself)."""

    socket: str
    engine: engines.Engine
    log: str = ""
    proc: subprocess.Popen[bytes] | None = None
    workdir: str = ""
    direct: bool = False
    extra: list[str] = field(default_factory=list)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log:
            return "(direct: no proxy)"
        try:
            text = Path(self.log).read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


_current_proxies: list[Proxy] = []


def _start_proxy(
    eng: engines.Engine,
    log_dir: Path,
    args: Sequence[str] = (),
    *,
    config: tuple[str, str, int] | None = None,
) -> Proxy:
    """Start `python -m sockproxy serve` in front of `eng`; wait until /_ping answers.

    ``config``: (configuration file, the socket it listens on, that socket's mode)
    in place of --listen/--upstream."""
    workdir = short_tmpdir("spp-")
    sock = os.path.join(workdir, "proxy.sock")
    log = str(log_dir / "proxy.log")
    extra = [*shlex.split(os.environ.get("SOCKPROXY_E2E_PROXY_ARGS", "")), *args]
    where = ["--listen", f"unix://{sock}", "--upstream", f"unix://{eng.socket}"]
    expected_mode = 0o660
    if config is not None:
        where = ["--config", config[0]]
        sock, expected_mode = config[1], config[2]
    argv = [sys.executable, "-m", "sockproxy", "serve", *where, *extra]
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT
        )
    proxy = Proxy(sock, eng, log, proc, workdir, extra=extra)
    try:
        deadline = time.monotonic() + PROXY_READY_TIMEOUT
        while not (os.path.exists(sock) and engines._ping(sock)):
            if proc.poll() is not None:
                pytest.fail(
                    f"sockproxy exited with status {proc.returncode} before answering:"
                    f" {shlex.join(argv)}\n{proxy.log_tail()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"sockproxy did not answer /_ping within {PROXY_READY_TIMEOUT}s\n"
                    f"{proxy.log_tail()}"
                )
            time.sleep(0.05)
        mode = os.stat(sock).st_mode & 0o777
        assert mode == expected_mode, f"proxy socket mode is {mode:o}, expected {expected_mode:o}"
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        _remove_dir(workdir)
        raise
    return proxy


def _remove_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)


def _stop_proxy(proxy: Proxy) -> None:
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGTERM)
    try:
        code = proxy.proc.wait(timeout=PROXY_EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        proxy.proc.kill()
        proxy.proc.wait()
        pytest.fail(f"sockproxy ignored SIGTERM for {PROXY_EXIT_TIMEOUT}s\n{proxy.log_tail()}")
    assert code == 0, f"sockproxy exited {code} on SIGTERM\n{proxy.log_tail()}"
    assert not os.path.exists(proxy.socket), "sockproxy left its socket behind"


@pytest.fixture(scope="session")
def proxy(engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """sockproxy in front of `engine`, stopped with SIGTERM at the end (exit 0, socket gone)."""
    yield from running_proxy(engine, tmp_path_factory, ())


@pytest.fixture(scope="session")
def guarded(engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """sockproxy enforcing the shipped policies/default.yaml in front of `engine`."""
    yield from running_proxy(
        engine, tmp_path_factory, ("--policy", str(REPO / "policies" / "default.yaml"))
    )


@pytest.fixture(scope="session")
def guarded_docker(guarded: Proxy, tmp_path_factory: pytest.TempPathFactory) -> DockerCLI:
    """The Docker CLI talking to the policy-enforcing proxy."""
    config = tmp_path_factory.mktemp(f"docker-config-guarded-{guarded.engine.kind}")
    return DockerCLI(guarded.socket, str(config))


def running_proxy(
    engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory, args: Sequence[str]
) -> Iterator[Proxy]:
    if DIRECT:
        p = Proxy(engine.socket, engine, direct=True)
        _current_proxies.append(p)
        yield p
        _current_proxies.remove(p)
        return
    p = _start_proxy(engine, tmp_path_factory.mktemp(f"proxy-{engine.kind}"), args)
    _current_proxies.append(p)
    try:
        yield p
    finally:
        _current_proxies.remove(p)
        try:
            _stop_proxy(p)
        finally:
            _remove_dir(p.workdir)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the proxy's log tail to every failing e2e test."""
    report = yield
    if report.failed and _current_proxies:
        for p in _current_proxies:
            report.sections.append(
                (f"sockproxy log {p.log or ''} ({p.engine.kind}), tail", p.log_tail())
            )
    return report


# --------------------------------------------------------------------------- the CLI fixtures


@pytest.fixture(scope="session")
def docker(proxy: Proxy, tmp_path_factory: pytest.TempPathFactory) -> DockerCLI:
    """The Docker CLI talking to the proxy, with its own DOCKER_CONFIG."""
    config = tmp_path_factory.mktemp(f"docker-config-{proxy.engine.kind}")
    return DockerCLI(proxy.socket, str(config))


@pytest.fixture(scope="session")
def direct_docker(engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory) -> DockerCLI:
    """The Docker CLI talking to the engine socket directly (for comparisons only)."""
    config = tmp_path_factory.mktemp(f"docker-config-direct-{engine.kind}")
    return DockerCLI(engine.socket, str(config))


@pytest.fixture
def kind(engine: engines.Engine) -> str:
    """ "podman" or "docker": the engine behind the proxy in this test."""
    return engine.kind


@pytest.fixture
def containers(docker: DockerCLI) -> Iterator[Containers]:
    """Names for the test's containers; every one is force-removed afterwards."""
    c = Containers(docker)
    yield c
    c.remove_all()
