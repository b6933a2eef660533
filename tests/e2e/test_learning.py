"""Learning mode end to end: a Docker CLI workload through permissive.yaml, its
audit log through `sockproxy suggest`, and the policy written enforced on the
same real engine: the workload passes again, and what it never did is refused
naming the rule."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import _current_proxies, _remove_dir, _start_proxy, _stop_proxy
from .dockercli import IMAGE, REPO, DockerCLI, describe, engines, unique

pytestmark = pytest.mark.e2e

PERMISSIVE = REPO / "policies" / "permissive.yaml"


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside default.yaml's bind roots (/srv, /home/*, /tmp), holding
    the directory the workload binds and a sibling it never touches."""
    base = Path(tempfile.mkdtemp(prefix="sp-learn-", dir="/var/tmp"))
    (base / "data").mkdir()
    (base / "other").mkdir()
    yield base
    shutil.rmtree(base)


@contextmanager
def serving(engine: engines.Engine, workdir: Path, policy: Path) -> Iterator[DockerCLI]:
    """sockproxy with `policy` in front of `engine`, its log in workdir/proxy.log;
    stopped with SIGTERM (which writes out the batched audit lines) on leaving."""
    workdir.mkdir()
    proxy = _start_proxy(engine, workdir, ["--policy", str(policy)])
    _current_proxies.append(proxy)
    try:
        yield DockerCLI(proxy.socket, str(workdir))
    finally:
        _current_proxies.remove(proxy)
        try:
            _stop_proxy(proxy)
        finally:
            _remove_dir(proxy.workdir)


def workload(docker: DockerCLI, data: Path) -> None:
    """A small CI job: run a container with a bind, read its logs, list, remove."""
    name = unique("learn")
    try:
        docker.ok("run", "--name", name, "-v", f"{data}:/x", IMAGE, "sh", "-c", "ls -d /x; echo hi")
        assert docker.ok("logs", name).split() == ["/x", "hi"]
        assert name in docker.ok("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}")
    finally:
        docker.ok("rm", "-f", name)


def assert_refused(res: subprocess.CompletedProcess[str], rule: str) -> None:
    assert res.returncode != 0, describe(res)
    assert "Error response from daemon: sockproxy: " in res.stderr, describe(res)
    assert f"(rule {rule}, policy learned)" in res.stderr, describe(res)


def test_a_learnt_policy_allows_the_workload_and_refuses_what_it_never_did(
    engine: engines.Engine, tmp_path: Path, outside: Path
) -> None:
    data = outside / "data"
    with serving(engine, tmp_path / "learning", PERMISSIVE) as docker:
        workload(docker, data)

    learned = tmp_path / "learned.yaml"
    log = tmp_path / "learning" / "proxy.log"
    suggest = subprocess.run(
        [sys.executable, "-m", "sockproxy.suggest", str(log), "-o", str(learned)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert suggest.returncode == 0, suggest.stderr
    assert f"relaxed bind-mount-paths: exact + {data.resolve()}" in suggest.stderr
    check = subprocess.run(
        [sys.executable, "-m", "sockproxy", "check", str(learned)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + learned.read_text()

    with serving(engine, tmp_path / "enforcing", learned) as docker:
        workload(docker, data)
        name = unique("never")
        # `docker run -d` is create and start, both learnt; exec never was.
        running = unique("learn")
        docker.ok("run", "-d", "--name", running, IMAGE, "sleep", "60")
        try:
            assert_refused(docker("exec", running, "true"), "operation-not-allowed")
        finally:
            docker.ok("rm", "-f", running)
        assert_refused(docker("volume", "create", name), "operation-not-allowed")
        assert_refused(
            docker("run", "--rm", "--name", name, "--privileged", IMAGE, "true"), "no-privileged"
        )
        for broader in (outside / "other", outside):
            res = docker("run", "--rm", "--name", name, "-v", f"{broader}:/x", IMAGE, "true")
            assert_refused(res, "bind-mount-paths")
