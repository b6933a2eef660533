"""Live reload against a real engine: SIGHUP and file changes swap the policy
at once; an invalid file leaves the running policy in force; requests under
load and open streams never notice."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Proxy, running_proxy, short_tmpdir
from .dockercli import (
    IMAGE,
    DockerCLI,
    UnixHTTPConnection,
    engines,
    error_message,
    record_figures,
    unique,
)

BASE = f"extends: {REPO / 'policies' / 'default.yaml'}\nname: live\n"
DENY_VOLUMES = BASE + "deny:\n  operations: [volume.list]\n"
INVALID = BASE + "checks:\n  - id: broken\n    check: no-such-check\n"


@pytest.fixture
def live(
    engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proxy, Path, DockerCLI]]:
    policy = Path(short_tmpdir("spr-"), "live.yaml")
    policy.write_text(BASE)
    for proxy in running_proxy(engine, tmp_path_factory, ("--policy", str(policy))):
        yield proxy, policy, DockerCLI(proxy.socket, str(tmp_path_factory.mktemp("cfg")))


def _reload(proxy: Proxy, policy: Path, text: str) -> None:
    policy.write_text(text)
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGHUP)


def _hammer(path: str, stop: threading.Event, failures: list[str], counts: list[int]) -> None:
    """Keep-alive requests as fast as they go; every answer must be 200."""
    conn = UnixHTTPConnection(path, timeout=30)
    try:
        while not stop.is_set():
            for target in ("/_ping", "/v1.41/containers/json"):
                status, body = conn.call("GET", target)
                counts[0] += 1
                if status != 200:
                    failures.append(f"{target}: {status} {error_message(body)}")
    except Exception as exc:  # a reset or a timeout is a failure too
        failures.append(repr(exc))
    finally:
        conn.close()


def test_reloads_under_load_fail_no_request_and_keep_streams(
    live: tuple[Proxy, Path, DockerCLI], tmp_path_factory: pytest.TempPathFactory
) -> None:
    proxy, policy, docker = live
    events = docker.popen("events", "--filter", "type=container")
    stop, failures, counts = threading.Event(), [], [0]
    workers = [
        threading.Thread(target=_hammer, args=(proxy.socket, stop, failures, counts))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    try:
        for round_ in range(12):
            _reload(proxy, policy, INVALID if round_ % 3 == 1 else BASE)
            time.sleep(0.15)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert not failures, failures[:5]
    assert counts[0] > 200  # it was under load
    figures = {"requests_during_reloads": counts[0], "reloads": 12, "invalid": 4}
    record_figures(tmp_path_factory.getbasetemp(), f"reload-{proxy.engine.kind}", figures)
    # The events stream opened before the reloads still delivers.
    name = unique("after-reload")
    docker.ok("run", "--rm", "--name", name, IMAGE, "true")
    events.wait_for(lambda line: name in line, timeout=30)
    events.close()
    log = Path(proxy.log).read_text()
    assert "reload failed" in log
    assert f"{policy}:" in log  # the error names the file (and line)
    assert '"event": "reloaded"' in log


def test_sighup_swaps_the_policy_and_an_invalid_file_keeps_it(
    live: tuple[Proxy, Path, DockerCLI],
) -> None:
    proxy, policy, docker = live
    docker.ok("volume", "ls")
    _reload(proxy, policy, DENY_VOLUMES)
    deadline = time.monotonic() + 10
    while docker("volume", "ls").returncode == 0:
        assert time.monotonic() < deadline, "the new policy never took effect"
        time.sleep(0.1)
    res = docker("volume", "ls")
    assert "operation-not-allowed" in res.stderr
    # An invalid file: the running policy (volume.list denied) stays in force.
    _reload(proxy, policy, INVALID)
    time.sleep(1.0)
    assert "operation-not-allowed" in docker("volume", "ls").stderr
    assert "no-such-check" in Path(proxy.log).read_text()


def test_a_changed_file_is_picked_up_without_a_signal(
    live: tuple[Proxy, Path, DockerCLI],
) -> None:
    proxy, policy, docker = live
    docker.ok("volume", "ls")
    policy.write_text(DENY_VOLUMES)
    deadline = time.monotonic() + 10
    while docker("volume", "ls").returncode == 0:
        assert time.monotonic() < deadline, "the file change was never picked up"
        time.sleep(0.2)
    assert '"why": "a file changed"' in Path(proxy.log).read_text()
