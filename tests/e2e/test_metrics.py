"""Metrics against a real engine: requests by operation and decision, refusals by
rule, open streams and hijacked sessions while they last, engine latency, reloads."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Proxy, running_proxy, short_tmpdir
from .dockercli import IMAGE, DockerCLI, engines, unique


@pytest.fixture
def measured(
    engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proxy, str, DockerCLI]]:
    scrape = os.path.join(short_tmpdir("spm-"), "metrics.sock")
    args = ("--policy", str(REPO / "policies" / "default.yaml"), "--metrics", f"unix://{scrape}")
    for proxy in running_proxy(engine, tmp_path_factory, args):
        yield proxy, scrape, DockerCLI(proxy.socket, str(tmp_path_factory.mktemp("cfg")))


def _scrape(path: str) -> dict[str, float]:
    """Every sample of GET /metrics, by its series text."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    samples = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


def _wait_for(path: str, series: str, value: float) -> dict[str, float]:
    deadline = time.monotonic() + 10
    while True:
        samples = _scrape(path)
        if samples.get(series) == value or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def test_metrics_count_what_the_proxy_decided_and_relayed(
    measured: tuple[Proxy, str, DockerCLI],
) -> None:
    proxy, scrape, docker = measured
    listener = proxy.socket
    docker.ok("run", "--rm", IMAGE, "true")
    res = docker("run", "--rm", "--privileged", IMAGE, "true")
    assert "no-privileged" in res.stderr
    name = unique("metrics")
    docker.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", "echo up; sleep 60")
    logs = docker.popen("logs", "-f", name)
    try:
        samples = _wait_for(scrape, 'sockproxy_open_streams{kind="stream"}', 1)
        assert samples['sockproxy_open_streams{kind="stream"}'] == 1
    finally:
        logs.close()
        docker("rm", "-f", name)
    samples = _wait_for(scrape, 'sockproxy_open_streams{kind="stream"}', 0)
    allowed = f'sockproxy_requests_total{{listener="{listener}",operation="container.create",'
    assert samples[allowed + 'decision="allow"}'] == 2
    assert samples[allowed + 'decision="deny"}'] == 1
    assert samples['sockproxy_refusals_total{rule="no-privileged"}'] == 1
    assert samples['sockproxy_open_streams{kind="hijack"}'] == 0  # the attach of run --rm ended
    count = 'sockproxy_engine_latency_seconds_count{operation="container.create"}'
    assert samples[count] == 2  # the refused create never reached the engine
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGHUP)
    samples = _wait_for(scrape, 'sockproxy_reloads_total{outcome="ok"}', 1)
    assert samples['sockproxy_reloads_total{outcome="ok"}'] == 1
    assert Path(scrape).exists()
