"""The recipes in policies/ through `sockproxy serve --policy policies/TOOL.yaml` to real engines.

Where the tool's own client runs here it is used: testcontainers-python (with
and without its Ryuk reaper), the Docker CLI with the command lines GitHub's
runner writes, podman --remote. Where the tool is a Go program that cannot be
built here (Traefik, Watchtower, Dozzle, GitLab Runner), its calls are replayed
in the order its source makes them, with docker-py (which maps one call to one
request, as the moby Go client does) or raw HTTP; docs/recipes.md names the
source of each sequence. Every replayed request must be answered by the engine
(whatever its status), never refused by sockproxy; every refusal names its rule.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.utils.socket import frames_iter

from .conftest import Proxy, running_proxy, short_tmpdir
from .dockercli import (
    DOCKER_CLI,
    IMAGE,
    REPO,
    DockerCLI,
    UnixHTTPConnection,
    describe,
    engines,
    error_message,
    unique,
)

pytestmark = pytest.mark.e2e


def _recipe(engine: engines.Engine, factory: pytest.TempPathFactory, name: str) -> Iterator[Proxy]:
    policy = str(REPO / "policies" / f"{name}.yaml")
    nested_dir = os.path.join(short_tmpdir("spn-"), "nested")
    yield from running_proxy(engine, factory, ("--policy", policy, "--nested-dir", nested_dir))


@pytest.fixture(scope="module")
def traefik(engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    yield from _recipe(engine, tmp_path_factory, "traefik")


@pytest.fixture(scope="module")
def dashboard(engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    yield from _recipe(engine, tmp_path_factory, "dashboard")


@pytest.fixture(scope="module")
def watchtower(engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    yield from _recipe(engine, tmp_path_factory, "watchtower")


@pytest.fixture(scope="module")
def testcontainers(
    engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    yield from _recipe(engine, tmp_path_factory, "testcontainers")


@pytest.fixture(scope="module")
def gitlab_runner(
    engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    yield from _recipe(engine, tmp_path_factory, "gitlab-runner")


@pytest.fixture(scope="module")
def github_runner(
    engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    yield from _recipe(engine, tmp_path_factory, "github-runner")


@pytest.fixture(scope="module")
def workstation(
    engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    yield from _recipe(engine, tmp_path_factory, "workstation")


@pytest.fixture(scope="module")
def pushed_image(
    engine: engines.Engine, registry: engines.Registry, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The test image in the private registry (pushed straight to the engine, not a recipe)."""
    pusher = DockerCLI(engine.socket, str(tmp_path_factory.mktemp("pusher-config")))
    server = registry.localhost_address
    pusher.ok("login", "-u", registry.username, "--password-stdin", server, input=registry.password)
    ref = f"{server}/recipes/{engine.kind}-app:1"
    pusher.ok("tag", IMAGE, ref)
    pusher.ok("push", ref, timeout=300)
    return ref


@pytest.fixture
def cleanup(engine: engines.Engine) -> Iterator[list[tuple[str, str]]]:
    """(kind, name) of objects a test made; removed straight on the engine afterwards."""
    made: list[tuple[str, str]] = []
    yield made
    direct = docker.APIClient(base_url=f"unix://{engine.socket}", version="1.41", timeout=60)
    for kind, name in reversed(made):
        try:
            if kind == "container":
                direct.remove_container(name, force=True, v=True)
            elif kind == "network":
                direct.remove_network(name)
            elif kind == "volume":
                direct.remove_volume(name, force=True)
            elif kind == "image":
                direct.remove_image(name, force=True)
        except docker.errors.NotFound:
            pass
    direct.close()


# -- helpers --------------------------------------------------------------------------


def refused_by_sockproxy(status: int, body: bytes) -> bool:
    return status in (400, 403, 413) and error_message(body).startswith("sockproxy: ")


def assert_engine_answered(status: int, body: bytes, what: str) -> None:
    """The request reached the engine: any answer but a sockproxy refusal."""
    assert not refused_by_sockproxy(status, body), f"{what}: {status} {error_message(body)}"


def assert_refused(status: int, body: bytes, rule: str, policy: str) -> None:
    assert status == 403, (status, body[:300])
    message = error_message(body)
    assert message.startswith("sockproxy: "), message
    assert message.endswith(f"(rule {rule}, policy {policy})"), message


def assert_api_refused(exc: docker.errors.APIError, rule: str, policy: str) -> None:
    assert exc.response is not None
    assert_refused(exc.response.status_code, exc.response.content, rule, policy)


def client(proxy: Proxy, version: str = "auto") -> docker.APIClient:
    """docker-py's low-level client on the recipe's socket: one call, one request."""
    return docker.APIClient(base_url=f"unix://{proxy.socket}", version=version, timeout=60)


def direct_client(engine: engines.Engine) -> docker.APIClient:
    return docker.APIClient(base_url=f"unix://{engine.socket}", version="1.41", timeout=60)


def run_direct(engine: engines.Engine, name: str, *cmd: str, **host: Any) -> str:
    """Start a container straight on the engine (the workload a monitoring tool watches)."""
    direct = direct_client(engine)
    labels = host.pop("labels", None)
    networking = host.pop("networking_config", None)
    created = direct.create_container(
        IMAGE,
        list(cmd),
        name=name,
        labels=labels,
        host_config=direct.create_host_config(**host),
        networking_config=networking,
    )
    direct.start(created)
    direct.close()
    return str(created["Id"])


def rootfs_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def is_cgroup_v2() -> bool:
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


# -- Traefik: replayed (pkg/provider/docker pdocker.go, pswarm.go; moby client ping.go) --


def test_traefik_provider_sequence_is_answered_by_the_engine(
    traefik: Proxy, engine: engines.Engine, cleanup: list[tuple[str, str]]
) -> None:
    since = int(time.time()) - 1
    name = unique("traefik-web")
    cleanup.append(("container", name))
    labels = {"traefik.enable": "true", "traefik.http.routers.web.rule": "Host(`web.local`)"}
    cid = run_direct(engine, name, "sleep", "60", labels=labels)
    conn = UnixHTTPConnection(traefik.socket)
    try:
        # API version negotiation: HEAD first, on the same kept-alive connection as the rest.
        conn.request("HEAD", "/_ping")
        head = conn.getresponse()
        assert (head.status, head.read()) == (200, b"")
        assert head.getheader("Api-Version"), head.getheaders()
        assert conn.call("GET", "/_ping") == (200, b"OK")
        status, body = conn.call("GET", "/v1.24/version")
        assert status == 200, body
        assert json.loads(body)["ApiVersion"]
        status, body = conn.call("GET", "/v1.24/containers/json?all=1")
        assert status == 200, body
        assert cid in [c["Id"] for c in json.loads(body)]
        status, body = conn.call("GET", f"/v1.24/containers/{cid}/json")
        assert status == 200, body
        assert json.loads(body)["Config"]["Labels"]["traefik.enable"] == "true"
        until = int(time.time()) + 1
        events = (
            f"/v1.24/events?since={since}&until={until}"
            "&filters=%7B%22type%22%3A%7B%22container%22%3Atrue%7D%7D"
        )
        status, body = conn.call("GET", events)
        assert status == 200, body
        started = [json.loads(line) for line in body.splitlines() if line.strip()]
        assert any(e.get("id") == cid and e.get("status") == "start" for e in started), started
        # providers.swarm: the engine answers (not a swarm manager, or no such route on Podman).
        for target in (
            "/v1.24/services",
            "/v1.24/networks?filters=%7B%22scope%22%3A%7B%22swarm%22%3Atrue%7D%7D",
            "/v1.24/tasks?filters=%7B%22desired-state%22%3A%7B%22running%22%3Atrue%7D%7D",
            "/v1.24/nodes/nosuchnode",
        ):
            status, body = conn.call("GET", target)
            assert_engine_answered(status, body, target)
    finally:
        conn.close()


def test_traefik_is_refused_everything_but_reads(
    traefik: Proxy, engine: engines.Engine, cleanup: list[tuple[str, str]]
) -> None:
    name = unique("traefik-web")
    cleanup.append(("container", name))
    run_direct(engine, name, "sleep", "60")
    conn = UnixHTTPConnection(traefik.socket)
    try:
        for method, target, body in (
            ("POST", "/v1.24/containers/create", {"Image": IMAGE, "Cmd": ["true"]}),
            ("POST", f"/v1.24/containers/{name}/exec", {"Cmd": ["id"]}),
            ("GET", f"/v1.24/containers/{name}/logs?stdout=1", None),
            ("GET", f"/v1.24/containers/{name}/archive?path=/etc", None),
            ("POST", f"/v1.24/containers/{name}/stop", None),
        ):
            status, answer = conn.call(method, target, body)
            assert_refused(status, answer, "operation-not-allowed", "traefik")
    finally:
        conn.close()
    state = direct_client(engine).inspect_container(name)["State"]
    assert state["Running"], state


# -- Homepage and Dozzle: replayed with docker-py (dockerode and moby client calls) -----


def test_dashboard_reads_status_stats_events_and_logs(
    dashboard: Proxy, engine: engines.Engine, cleanup: list[tuple[str, str]]
) -> None:
    since = int(time.time()) - 1
    name = unique("dash-web")
    cleanup.append(("container", name))
    cid = run_direct(engine, name, "sh", "-c", "echo dashboard line; exec sleep 60")
    conn = UnixHTTPConnection(dashboard.socket)
    conn.request("HEAD", "/_ping")  # Dozzle: Ping with version negotiation
    head = conn.getresponse()
    assert (head.status, head.read()) == (200, b"")
    conn.close()
    api = client(dashboard)  # "auto": GET /version, as Dozzle's ServerVersion
    assert api.ping()
    assert api.info()["Containers"] >= 1
    assert cid in [c["Id"] for c in api.containers(all=True)]
    assert api.inspect_container(name)["State"]["Running"]
    stats = api.stats(name, stream=False)  # Homepage: one sample per refresh
    assert "memory_stats" in stats, stats
    deadline = time.monotonic() + 20
    while b"dashboard line" not in api.logs(name, timestamps=True):
        assert time.monotonic() < deadline, "the container's log line never arrived"
        time.sleep(0.2)
    events = list(api.events(since=since, until=int(time.time()) + 1, decode=True))
    assert any(e.get("id") == cid for e in events), events
    # Homepage's swarm widgets: the engine answers (503 off a swarm, 404 on Podman).
    with pytest.raises(docker.errors.APIError) as caught:
        api.services()
    assert caught.value.response is not None
    assert_engine_answered(
        caught.value.response.status_code, caught.value.response.content, "services"
    )
    api.close()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda api, c: api.exec_create(c, ["id"]), id="shell"),
        pytest.param(lambda api, c: api.restart(c), id="restart action"),
        pytest.param(lambda api, c: api.get_archive(c, "/etc/hostname"), id="file copy"),
        pytest.param(lambda api, c: api.remove_container(c, force=True), id="remove"),
    ],
)
def test_dashboard_is_refused_actions_and_shells(
    dashboard: Proxy, engine: engines.Engine, cleanup: list[tuple[str, str]], call: Any
) -> None:
    name = unique("dash-web")
    cleanup.append(("container", name))
    run_direct(engine, name, "sleep", "60")
    api = client(dashboard)
    with pytest.raises(docker.errors.APIError) as caught:
        call(api, name)
    assert_api_refused(caught.value, "operation-not-allowed", "dashboard")
    api.close()
    assert direct_client(engine).inspect_container(name)["State"]["Running"]


# -- Watchtower: replayed with docker-py at API 1.25 (pkg/container/client.go) ------------


def _watched(
    engine: engines.Engine, ref: str, cleanup: list[tuple[str, str]]
) -> tuple[str, str, str]:
    """A container Watchtower watches: on two networks, with a bind, a port and a label."""
    front, back = unique("wt-front"), unique("wt-back")
    direct = direct_client(engine)
    for net in (front, back):
        direct.create_network(net)
        cleanup.append(("network", net))
    name = unique("wt-web")
    cleanup.append(("container", name))
    run_direct(
        engine,
        name,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.2; done",
        labels={"com.centurylinklabs.watchtower.enable": "true"},
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
        port_bindings={8080: None},
        network_mode=front,
    )
    direct.connect_container_to_network(name, back)
    direct.close()
    return name, front, back


def test_watchtower_update_cycle_through_its_recipe(
    watchtower: Proxy,
    engine: engines.Engine,
    registry: engines.Registry,
    pushed_image: str,
    cleanup: list[tuple[str, str]],
) -> None:
    """List, inspect, pull with credentials, pre-update hook, kill, remove, recreate with the
    fields the user set, reconnect networks, start, post-update hook, rename, clean up."""
    old_tag = f"{pushed_image.rsplit(':', 1)[0]}:old-{unique('t')}"
    direct = direct_client(engine)
    direct.tag(IMAGE, old_tag.rsplit(":", 1)[0], old_tag.rsplit(":", 1)[1])
    cleanup.append(("image", old_tag))
    name, front, back = _watched(engine, pushed_image, cleanup)
    api = client(watchtower, version="1.25")

    listed = api.containers(
        filters={"status": ["running"], "label": ["com.centurylinklabs.watchtower.enable=true"]}
    )
    assert [c["Names"] for c in listed] == [[f"/{name}"]]
    info = api.inspect_container(name)
    assert api.inspect_image(info["Image"])["Id"] == info["Image"]
    repo, tag = pushed_image.rsplit(":", 1)
    auth = {"username": registry.username, "password": registry.password}
    pulled = list(api.pull(repo, tag=tag, auth_config=auth, stream=True, decode=True))
    assert not [p for p in pulled if "error" in p], pulled
    assert api.inspect_image(pushed_image)["Id"]

    def hook(container: str, command: str) -> bytes:
        exec_id = api.exec_create(container, ["sh", "-c", command])["Id"]
        output = api.exec_start(exec_id)
        assert api.exec_inspect(exec_id)["ExitCode"] == 0
        return bytes(output)

    assert hook(name, "echo pre-update") == b"pre-update\n"
    api.kill(name, signal="SIGTERM")
    # waitForStopOrTimeout: polls inspect until the container stops (or a timeout).
    deadline = time.monotonic() + 20
    while api.inspect_container(name)["State"]["Running"]:
        assert time.monotonic() < deadline, "the container ignored SIGTERM"
        time.sleep(0.1)
    api.remove_container(name, force=True, v=True)

    config = info["Config"]
    host = {key: info["HostConfig"][key] for key in ("PortBindings", "RestartPolicy")}
    body = {
        "Image": pushed_image,
        "Cmd": config["Cmd"],
        "Labels": config["Labels"],
        "ExposedPorts": {"8080/tcp": {}},
        "HostConfig": {**host, "NetworkMode": front},
        "NetworkingConfig": {"EndpointsConfig": {front: {}}},
    }
    created = api.create_container_from_config(body, name=name)
    for net in (front,):
        api.disconnect_container_from_network(created["Id"], net, force=True)
    for net in (front, back):
        api.connect_container_to_network(created["Id"], net, aliases=[name])
    api.start(created["Id"])
    fresh = api.inspect_container(created["Id"])
    assert fresh["State"]["Running"], fresh["State"]
    assert set(fresh["NetworkSettings"]["Networks"]) >= {front, back}
    assert hook(created["Id"], "echo post-update") == b"post-update\n"
    renamed = unique("wt-old")
    api.rename(created["Id"], renamed)
    cleanup.append(("container", renamed))
    api.remove_image(old_tag)  # --cleanup
    with pytest.raises(docker.errors.ImageNotFound):
        direct.inspect_image(old_tag)
    api.close()
    direct.close()


def test_watchtower_recreate_from_the_whole_inspect_is_refused_today(
    watchtower: Proxy, engine: engines.Engine, pushed_image: str, cleanup: list[tuple[str, str]]
) -> None:
    """Watchtower re-sends the inspected HostConfig whole. Docker fills in CgroupnsMode (host on
    cgroup v1) and its default MaskedPaths/ReadonlyPaths; Podman's compat inspect says Runtime
    "oci". default.yaml's rules refuse each (docs/recipes.md, Watchtower: limits)."""
    name, _, _ = _watched(engine, pushed_image, cleanup)
    api = client(watchtower, version="1.25")
    info = api.inspect_container(name)
    body = {**info["Config"], "HostConfig": info["HostConfig"]}
    with pytest.raises(docker.errors.APIError) as caught:
        api.create_container_from_config(body, name=unique("wt-recreated"))
    if engine.kind == "podman":
        rule = "known-runtimes"
    else:
        rule = "masked-paths" if is_cgroup_v2() else "no-host-namespaces"
    assert_api_refused(caught.value, rule, "watchtower")
    api.close()


def test_watchtower_successor_with_the_socket_is_refused(watchtower: Proxy) -> None:
    """Self-update: the new Watchtower container mounts the socket it was given."""
    api = client(watchtower, version="1.25")
    host = api.create_host_config(binds=[f"{watchtower.socket}:/var/run/docker.sock"])
    with pytest.raises(docker.errors.APIError) as caught:
        api.create_container(IMAGE, ["true"], host_config=host, name=unique("watchtower"))
    assert_api_refused(caught.value, "no-engine-socket", "watchtower")
    api.close()


# -- Testcontainers: testcontainers-python itself ------------------------------------------

TESTCONTAINERS_SCRIPT = """
import json, sys
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.waiting_utils import wait_for_logs

image = sys.argv[1]
with Network() as net:
    container = (
        DockerContainer(image, command=["sh", "-c", "cat /srv/motd; echo ready; exec sleep 60"])
        .with_network(net)
        .with_network_aliases("app")
        .with_exposed_ports(8080)
        .with_env("GREETING", "hello")
        .with_copy_into_container(b"copied in\\n", "/srv/motd")
    )
    with container:
        wait_for_logs(container, "ready", timeout=30, interval=0.2)
        code, output = container.exec(["sh", "-c", "echo $GREETING from exec"])
        print(json.dumps({
            "logs": container.get_logs()[0].decode(),
            "exec": [code, output.decode()],
            "port": container.get_exposed_port(8080),
            "network": net.name,
        }))
"""


def _testcontainers(proxy: Proxy, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the script with its own environment: testcontainers reads it at import."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "TESTCONTAINERS_"))}
    base.update(
        DOCKER_HOST=f"unix://{proxy.socket}",
        DOCKER_CONFIG=str(tmp_path / "docker-config"),
        HOME=str(tmp_path),  # no ~/.testcontainers.properties of the machine's
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", TESTCONTAINERS_SCRIPT, IMAGE],
        capture_output=True,
        text=True,
        env=base,
        timeout=120,
        check=False,
    )


def test_testcontainers_python_runs_a_container_without_ryuk(
    testcontainers: Proxy, engine: engines.Engine, tmp_path: Path
) -> None:
    res = _testcontainers(testcontainers, tmp_path, TESTCONTAINERS_RYUK_DISABLED="true")
    assert res.returncode == 0, describe(res)
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["logs"] == "copied in\nready\n"
    assert result["exec"] == [0, "hello from exec\n"]
    assert int(result["port"]) > 0
    # Everything it made is gone: the container and its network.
    direct = direct_client(engine)
    assert not direct.containers(all=True, filters={"label": "org.testcontainers=true"})
    assert not direct.networks(names=[result["network"]])
    direct.close()


def test_testcontainers_reaper_pattern_works_through_a_nested_socket(
    testcontainers: Proxy, engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Ryuk's pattern: a container with the engine socket mounted lists the session's
    containers by label and removes them. It gets a nested socket under the same
    policy: the reaping works, a privileged container from inside is refused."""
    bin_dir = short_tmpdir("spb-")
    os.chmod(bin_dir, 0o755)
    shutil.copy(DOCKER_CLI, os.path.join(bin_dir, "docker"))
    cli = DockerCLI(testcontainers.socket, str(tmp_path_factory.mktemp("tc-cli")))
    session = unique("session")
    label = f"org.testcontainers.session-id={session}"
    for _ in range(2):
        cli.ok("create", "--label", label, IMAGE, "true")
    reaper = (
        f"D='/cli/docker -H unix:///var/run/docker.sock';"
        f"$D ps -aq --filter label={label} | xargs $D rm -f;"
        f"$D run --rm --privileged {IMAGE} true; echo privileged=$?"
    )
    try:
        out = cli.ok(
            "run", "--rm", "--label", "org.testcontainers.ryuk=true",
            "-v", "/var/run/docker.sock:/var/run/docker.sock:rw",
            "-v", f"{bin_dir}:/cli:ro",
            IMAGE, "sh", "-c", reaper,
            timeout=120,
        )  # fmt: skip
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)
    assert "privileged=125" in out
    direct = direct_client(engine)
    assert not direct.containers(all=True, filters={"label": label})
    direct.close()
    log = Path(testcontainers.log).read_text()
    assert "(rule no-privileged, policy testcontainers)" in log


# -- GitLab Runner's docker executor: replayed with docker-py (helpers/docker/client.go) --


def test_gitlab_runner_docker_executor_job(
    gitlab_runner: Proxy,
    engine: engines.Engine,
    cleanup: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    job = unique("job")
    labels = {"com.gitlab.gitlab-runner.job.id": job, "com.gitlab.gitlab-runner.type": "build"}
    conn = UnixHTTPConnection(gitlab_runner.socket)
    conn.request("HEAD", "/_ping")  # the moby client's version negotiation
    head = conn.getresponse()
    assert (head.status, head.read()) == (200, b"")
    conn.close()
    api = client(gitlab_runner)
    assert api.info()["ServerVersion"]

    # The prebuilt helper image: loaded from an archive, or imported from a rootfs tar.
    direct = direct_client(engine)
    archive = b"".join(direct.get_image(IMAGE))
    direct.close()
    helper = f"localhost/gitlab-runner-helper-{job}"
    api.load_image(archive, quiet=True)
    api.tag(IMAGE, helper, "x86_64-test")
    cleanup.append(("image", f"{helper}:x86_64-test"))
    # (Podman's compat import names the image REPO:latest whatever the tag: use its id.)
    answer = api.import_image_from_data(
        rootfs_tar({"helper.txt": b"helper\n"}), repository=f"localhost/prebuilt-{job}", tag="t"
    )
    imported = json.loads(answer.strip().splitlines()[-1])["status"]
    cleanup.append(("image", imported))
    assert api.inspect_image(imported)["Id"] == imported
    assert api.inspect_image(IMAGE)["Id"]

    cache = f"runner-{job}-cache"
    api.create_volume(cache, labels={"com.gitlab.gitlab-runner.type": "cache"})
    cleanup.append(("volume", cache))
    assert api.inspect_volume(cache)["Name"] == cache
    assert api.volumes(filters={"label": "com.gitlab.gitlab-runner.type=cache"})["Volumes"]
    network = f"runner-{job}-network"
    api.create_network(network, labels=labels)
    cleanup.append(("network", network))
    assert api.inspect_network(network)["Name"] == network
    builds = tmp_path / "builds"
    builds.mkdir()

    # A service and the build container, on the per-build network.
    service = f"runner-{job}-svc"
    cleanup.append(("container", service))
    api.create_container(
        IMAGE,
        ["sh", "-c", "echo service ready; exec sleep 60"],
        name=service,
        labels=labels,
        host_config=api.create_host_config(network_mode=network, restart_policy={"Name": "no"}),
    )
    api.start(service)
    build = f"runner-{job}-build"
    cleanup.append(("container", build))
    api.create_container(
        IMAGE,
        ["sh"],
        name=build,
        labels=labels,
        stdin_open=True,
        host_config=api.create_host_config(
            binds=[f"{cache}:/cache", f"{builds}:/builds"],
            network_mode=network,
            restart_policy={"Name": "no"},
        ),
    )
    # The script goes in over an attach stream opened before the start (ContainerAttach).
    sock = api.attach_socket(build, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    api.start(build)
    raw = sock._sock
    raw.sendall(b"echo job ran > /builds/out.txt; echo cached > /cache/c; echo script done\nexit\n")
    raw.shutdown(socket.SHUT_WR)
    output = b"".join(data for _, data in frames_iter(sock, tty=False))
    sock.close()
    raw.close()
    assert b"script done" in output, output
    assert api.wait(build, timeout=30)["StatusCode"] == 0
    assert (builds / "out.txt").read_text() == "job ran\n"
    assert b"service ready" in api.logs(service)

    # The interactive web terminal: an exec session in the build's service.
    exec_id = api.exec_create(service, ["sh", "-c", "echo terminal"], tty=True, stdin=True)
    assert b"terminal" in api.exec_start(exec_id["Id"], tty=True)

    listed = api.containers(all=True, filters={"label": f"com.gitlab.gitlab-runner.job.id={job}"})
    assert {c["Names"][0] for c in listed} == {f"/{service}", f"/{build}"}
    api.kill(service, signal="SIGKILL")
    api.stop(service, timeout=1)
    api.disconnect_container_from_network(service, network, force=True)
    for name in (service, build):
        api.remove_container(name, force=True, v=True)
    api.remove_network(network)
    api.remove_volume(cache)
    api.close()


@pytest.mark.parametrize(
    ("host", "rule"),
    [
        pytest.param({"privileged": True}, "no-privileged", id="privileged = true"),
        pytest.param(
            {"binds": ["/var/run/docker.sock:/var/run/docker.sock"]},
            "bind-mount-paths",
            id="docker.sock volume",
        ),
        pytest.param({"cap_add": ["SYS_ADMIN"]}, "default-capabilities", id="cap_add"),
        pytest.param({"network_mode": "host"}, "no-host-namespaces", id="network_mode host"),
    ],
)
def test_gitlab_runner_config_that_gives_jobs_the_host_is_refused(
    gitlab_runner: Proxy, engine: engines.Engine, host: dict[str, Any], rule: str
) -> None:
    api = client(gitlab_runner)
    name = unique("runner-build")
    with pytest.raises(docker.errors.APIError) as caught:
        api.create_container(IMAGE, ["sh"], name=name, host_config=api.create_host_config(**host))
    assert_api_refused(caught.value, rule, "gitlab-runner")
    api.close()
    assert not direct_client(engine).containers(all=True, filters={"name": name})


def test_gitlab_runner_socket_serves_the_executor_only(gitlab_runner: Proxy) -> None:
    conn = UnixHTTPConnection(gitlab_runner.socket)
    try:
        status, body = conn.call("POST", "/v1.41/build?t=x", b"")
        assert_refused(status, body, "operation-not-allowed", "gitlab-runner")
        status, body = conn.call("GET", "/v1.41/images/get?names=x")
        assert_refused(status, body, "operation-not-allowed", "gitlab-runner")
    finally:
        conn.close()


# -- GitHub Actions runner: the Docker CLI with DockerCommandManager.cs's command lines ---


@pytest.fixture
def runner_dirs(tmp_path: Path) -> dict[str, Path]:
    """The runner's directories, as a runner installed under /tmp would have them."""
    dirs = {
        "work": tmp_path / "_work",
        "externals": tmp_path / "externals",
        "temp": tmp_path / "_work" / "_temp",
        "home": tmp_path / "_work" / "_temp" / "_github_home",
        "workflow": tmp_path / "_work" / "_temp" / "_github_workflow",
        "workspace": tmp_path / "_work" / "app" / "app",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return dirs


def _job_volumes(dirs: dict[str, Path], with_socket: bool) -> list[str]:
    volumes = ['"/var/run/docker.sock":"/var/run/docker.sock"'] if with_socket else []
    volumes += [
        f'"{dirs["work"]}":"/__w"',
        f'"{dirs["externals"]}":"/__e":ro',
        f'"{dirs["temp"]}":"/__w/_temp"',
        f'"{dirs["home"]}":"/github/home"',
        f'"{dirs["workflow"]}":"/github/workflow"',
    ]
    return [arg for volume in volumes for arg in ("-v", volume.replace('"', ""))]


def test_github_runner_container_job_with_a_service(
    github_runner: Proxy,
    engine: engines.Engine,
    registry: engines.Registry,
    pushed_image: str,
    runner_dirs: dict[str, Path],
    cleanup: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    cli = DockerCLI(github_runner.socket, str(tmp_path / "docker-config"))
    label = unique("runner")
    network = f"github_network_{label}"
    job, svc = f"job-{label}", f"svc-{label}"
    cleanup += [("network", network), ("container", job), ("container", svc)]
    api_version = cli.ok("version", "--format", "{{.Server.APIVersion}}").strip()
    assert api_version.startswith("1."), api_version
    assert cli.ok("ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={label}") == ""
    cli.ok("network", "prune", "--force", "--filter", f"label={label}")
    cli.ok("network", "create", "--label", label, network)

    # docker login and pull with a per-job config directory.
    config = str(tmp_path / "job-config")
    cli.ok(
        "--config", config, "login", registry.localhost_address,
        "-u", registry.username, "--password-stdin", input=registry.password,
    )  # fmt: skip
    cli.ok("--config", config, "pull", pushed_image, timeout=300)

    create = [
        "create", "--name", job, "--label", label, "--workdir", "/__w/app/app",
        "--network", network, "-e", "GITHUB_ACTIONS=true", "-e", "CI=true",
    ]  # fmt: skip
    tail = ["--entrypoint", "tail", pushed_image, "-f", "/dev/null"]
    # As the runner words it: /var/run/docker.sock is mounted into every job container.
    res = cli(*create, *_job_volumes(runner_dirs, with_socket=True), *tail)
    assert res.returncode != 0, describe(res)
    assert "(rule bind-mount-paths, policy github-runner)" in res.stderr, describe(res)
    assert "/var/run/docker.sock" in res.stderr, describe(res)
    # Without it (container hooks that leave it out), the job runs.
    cid = cli.ok(*create, *_job_volumes(runner_dirs, with_socket=False), *tail).strip()
    cli.ok("start", cid)
    running = cli.ok(
        "ps", "--all", "--filter", f"id={cid}", "--filter", "status=running", "--no-trunc",
        "--format", "{{.ID}} {{.Status}}",
    )  # fmt: skip
    assert running.startswith(cid), running
    env = cli.ok("inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", cid)
    assert "GITHUB_ACTIONS=true" in env.splitlines(), env
    res = cli("exec", "-i", cid, "sh", "-c", "cat /etc/*release | grep ^ID")
    assert res.returncode in (0, 1), describe(res)  # busybox has no os-release
    assert "sockproxy" not in res.stderr, describe(res)
    (runner_dirs["temp"] / "step.sh").write_text(
        'echo "actions=$GITHUB_ACTIONS" > result.txt\necho step done\n'
    )
    out = cli.ok(
        "exec", "-i", "--workdir", "/__w/app/app", "-e", "GITHUB_ACTIONS", cid,
        "sh", "-e", "/__w/_temp/step.sh",
        env={"GITHUB_ACTIONS": "true"},
    )  # fmt: skip
    assert out == "step done\n"
    assert (runner_dirs["workspace"] / "result.txt").read_text() == "actions=true\n"

    # A service container: network alias, published port, health, logs.
    cli.ok(
        "create", "--name", svc, "--label", label, "--network", network,
        "--network-alias", "redis", "-p", "6379", "-e", "GITHUB_ACTIONS=true", "-e", "CI=true",
        pushed_image, "sh", "-c", "echo service up; exec sleep 60",
    )  # fmt: skip
    cli.ok("start", svc)
    assert "6379/tcp -> " in cli.ok("port", svc)
    health = "{{if .Config.Healthcheck}}{{print .State.Health.Status}}{{end}}"
    assert cli.ok("inspect", f"--format={health}", svc).strip() == ""
    deadline = time.monotonic() + 20
    while "service up" not in cli.ok("logs", "--details", svc):
        assert time.monotonic() < deadline, "the service never logged"
        time.sleep(0.2)
    cli.ok("rm", "--force", cid, svc)
    cli.ok("network", "rm", network)


def test_github_runner_container_action(
    github_runner: Proxy,
    engine: engines.Engine,
    runner_dirs: dict[str, Path],
    tmp_path: Path,
) -> None:
    """`uses: docker://image`: docker run --rm, refused while the runner mounts the socket."""
    cli = DockerCLI(github_runner.socket, str(tmp_path / "docker-config"))
    (runner_dirs["workspace"] / "input.txt").write_text("from the workspace\n")
    label = unique("runner")
    run = [
        "run", "--rm", "--name", f"act-{label}", "--label", label,
        "--workdir", "/github/workspace", "-e", "GITHUB_ACTIONS=true", "-e", "CI=true",
        "-v", f"{runner_dirs['workspace']}:/github/workspace",
        "-v", f"{runner_dirs['home']}:/github/home",
    ]  # fmt: skip
    action = [IMAGE, "cat", "input.txt"]
    res = cli(*run, "-v", "/var/run/docker.sock:/var/run/docker.sock", *action)
    assert res.returncode != 0, describe(res)
    assert "(rule bind-mount-paths, policy github-runner)" in res.stderr, describe(res)
    assert cli.ok(*run, *action) == "from the workspace\n"


def test_github_runner_dockerfile_action_build(
    github_runner: Proxy, engine: engines.Engine, tmp_path: Path
) -> None:
    """`docker build -t -f` of a Dockerfile action: allowed on Docker; on Podman the compat
    builder runs steps in the host's network, which no-build-host-access refuses."""
    cli = DockerCLI(github_runner.socket, str(tmp_path / "docker-config"))
    context = tmp_path / "action"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {IMAGE}\nLABEL action=recipes\n")
    tag = f"localhost/{unique('action')}:latest"
    res = cli(
        "build", "-t", tag, "-f", str(context / "Dockerfile"), str(context),
        env={"DOCKER_BUILDKIT": "0"},
    )  # fmt: skip
    if engine.kind == "docker":
        assert res.returncode == 0, describe(res)
        labels = cli.ok("image", "inspect", "--format", "{{json .Config.Labels}}", tag)
        assert json.loads(labels) == {"action": "recipes"}
        cli.ok("image", "rm", tag)
    else:
        assert res.returncode != 0, describe(res)
        assert "(rule no-build-host-access, policy github-runner)" in res.stderr, describe(res)


# -- A developer workstation: the Docker CLI and podman --remote -------------------------


def test_workstation_dev_loop_with_the_docker_cli(
    workstation: Proxy, engine: engines.Engine, tmp_path: Path
) -> None:
    cli = DockerCLI(workstation.socket, str(tmp_path / "docker-config"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.txt").write_text("source\n")
    out = cli.ok(
        "run", "--rm", "-v", f"{project}:/src", "-w", "/src", IMAGE,
        "sh", "-c", "cat main.txt; echo built > out.txt",
    )  # fmt: skip
    assert out == "source\n"
    assert (project / "out.txt").read_text() == "built\n"
    for source, denied in (
        ("/home/sp-recipes-dev/.bashrc", "/home/*/.bashrc"),
        ("/home/sp-recipes-dev/.config/systemd/user", "/home/*/.config/systemd"),
        ("/home/sp-recipes-dev/.ssh", ".ssh"),
    ):
        res = cli("run", "--rm", "-v", f"{source}:/x", IMAGE, "true")
        assert res.returncode != 0, describe(res)
        assert "(rule bind-mount-paths, policy workstation)" in res.stderr, describe(res)
        assert f"denied {denied}" in res.stderr, describe(res)


def podman_remote(
    proxy: Proxy, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "--remote", "--url", f"unix://{proxy.socket}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def podman_ok(proxy: Proxy, *args: str) -> str:
    res = podman_remote(proxy, *args)
    assert res.returncode == 0, describe(res)
    return res.stdout


@pytest.mark.parametrize("engine", ["podman"], indirect=True)
def test_workstation_podman_remote(
    workstation: Proxy, engine: engines.Engine, tmp_path: Path, cleanup: list[tuple[str, str]]
) -> None:
    """podman --remote: run with a project bind, pods, generate systemd and kube,
    manifest lists; builds (today) and secrets refused."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.txt").write_text("source\n")
    out = podman_ok(
        workstation, "run", "--rm", "-v", f"{project}:/src", IMAGE, "cat", "/src/main.txt",
    )  # fmt: skip
    assert out == "source\n"
    pod = unique("dev-pod")
    podman_ok(workstation, "pod", "create", "--name", pod)
    try:
        name = unique("dev-web")
        cleanup.append(("container", name))
        loop = "trap 'exit 0' TERM; while :; do sleep 0.2; done"
        podman_ok(workstation, "run", "-d", "--pod", pod, "--name", name, IMAGE, "sh", "-c", loop)
        unit = podman_ok(workstation, "generate", "systemd", "--new", "--name", name)
        assert "ExecStart=" in unit, unit
        kube = podman_ok(workstation, "generate", "kube", pod)
        assert "kind: Pod" in kube, kube
    finally:
        podman_ok(workstation, "pod", "rm", "--force", pod)
    manifest = f"localhost/{unique('multiarch')}:1"
    podman_ok(workstation, "manifest", "create", manifest)
    podman_ok(workstation, "manifest", "rm", manifest)

    # Podman 4.3's client sends nsoptions [{"Name": "user", "Host": true}] with every
    # build (no user namespace: not host access), and the host path of its seccomp
    # profile, which the engine would read: that one is refused.
    (project / "Containerfile").write_text(f"FROM {IMAGE}\nLABEL dev=1\n")
    res = podman_remote(workstation, "build", "-t", f"localhost/{unique('dev')}:1", str(project))
    assert res.returncode != 0, describe(res)
    assert "(rule no-build-host-access, policy workstation)" in res.stderr, describe(res)
    assert "seccomp=/usr/share/containers/seccomp.json" in res.stderr, describe(res)
    res = podman_remote(workstation, "secret", "create", unique("s"), str(project / "main.txt"))
    assert res.returncode != 0, describe(res)
    assert "(rule operation-not-allowed, policy workstation)" in res.stderr, describe(res)
    res = podman_remote(
        workstation, "run", "--rm", "-v", "/home/sp-recipes-dev/.bashrc:/x", IMAGE, "true"
    )
    assert res.returncode != 0, describe(res)
    assert "(rule bind-mount-paths, policy workstation)" in res.stderr, describe(res)
