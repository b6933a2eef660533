"""The recipe policies in policies/, one decision table per tool.

Each row is a request the tool makes (method, target, body), taken from the
tool's source (docs/recipes.md names the files), or a dangerous request a
tool's socket must not carry; expected is ``ALLOW`` or the id of the rule that
refuses it. Decisions go through the classify -> normalise -> evaluate
pipeline ``sockproxy serve`` and ``sockproxy explain`` run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sockproxy import nested
from sockproxy.checks import Context
from sockproxy.errors import ProxyError
from sockproxy.normalize import normalize
from sockproxy.policy import Policy, check_files, evaluate, load_policy
from sockproxy.routes import ENDPOINTS, classify

POLICIES = Path(__file__).resolve().parents[2] / "policies"
RECIPES = (
    "traefik",
    "portainer",
    "watchtower",
    "dashboard",
    "testcontainers",
    "gitlab-runner",
    "github-runner",
    "workstation",
)
READ_ONLY = ("traefik", "dashboard")
ALLOW = "allow"
# sockproxy's own socket as `serve --listen` would pass it to the checks: a
# path under an allowed bind root, so only no-engine-socket stands in the way.
OWN_SOCKET = "/tmp/sockproxy-recipes/proxy.sock"


def load(name: str, engine: str = "docker") -> Policy:
    """A policy as `serve` loads it in front of `engine` (builds are read per engine)."""
    context = Context(own_sockets=(OWN_SOCKET,), engine=engine)
    return load_policy(str(POLICIES / f"{name}.yaml"), context)


def decide(policy: Policy, method: str, target: str, body: Any = None) -> str:
    """ALLOW, the HTTP status of a body refused before the checks, or the refusing rule."""
    route = classify(method, target)
    payload = json.dumps(body).encode() if isinstance(body, dict | list) else body
    try:
        request = normalize(route.operation, route.section, route.body, route.query, payload)
    except ProxyError as exc:
        return str(exc.status)
    if policy.nested_policy is not None:  # as serve does: engine-socket binds become nested
        request = nested.without(request, nested.engine_socket_binds(request, policy.context))
    decision = evaluate(policy, request)
    return ALLOW if decision.allowed else str(decision.rule)


# -- every recipe ------------------------------------------------------------------


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_passes_sockproxy_check(name: str) -> None:
    assert list(check_files([str(POLICIES / f"{name}.yaml")])) == []


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_is_named_after_its_file(name: str) -> None:
    assert load(name).name == name


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_allows_the_health_check_ping(name: str) -> None:
    """Every client library pings first, and so do health checks of the proxy."""
    assert decide(load(name), "HEAD", "/_ping") == ALLOW
    assert decide(load(name), "GET", "/v1.41/_ping") == ALLOW


@pytest.mark.parametrize("name", sorted(set(RECIPES) - set(READ_ONLY)))
def test_recipe_that_runs_containers_keeps_every_default_rule(name: str) -> None:
    """Extending default.yaml: the same rules, in the same modes, none switched off."""
    default = {rule.id: rule for rule in load("default").rules}
    rules = {rule.id: rule for rule in load(name).rules}
    assert rules.keys() == default.keys()
    for rule_id, rule in rules.items():
        assert rule.mode is default[rule_id].mode, rule_id
        if rule_id != "bind-mount-paths":
            assert rule.params == default[rule_id].params, rule_id


@pytest.mark.parametrize("name", sorted(set(RECIPES) - set(READ_ONLY)))
def test_recipe_that_runs_containers_keeps_the_default_denials(name: str) -> None:
    default = load("default")
    assert default.deny_operations <= load(name).deny_operations


def test_workstation_binds_deny_everything_default_denies_and_more() -> None:
    (default,) = [r for r in load("default").rules if r.id == "bind-mount-paths"]
    (ours,) = [r for r in load("workstation").rules if r.id == "bind-mount-paths"]
    assert ours.params["allow"] == default.params["allow"]
    assert set(default.params["deny"]) < set(ours.params["deny"])


def _state_changing_endpoints() -> list[tuple[str, str]]:
    """(method, operation) of every catalogued endpoint that is not a GET or HEAD."""
    return sorted({(e.method, e.operation) for e in ENDPOINTS if e.method not in ("GET", "HEAD")})


@pytest.mark.parametrize("name", READ_ONLY)
def test_read_only_recipe_allows_only_get_and_head(name: str) -> None:
    policy = load(name)
    allowed = [
        (method, operation)
        for method, operation in _state_changing_endpoints()
        if policy.allows_operation(operation, operation.split(".")[0])
    ]
    assert allowed == []


# -- the decision tables -------------------------------------------------------------

IMAGE = "docker.io/library/nginx:1.27"


def create(host_config: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    """A Docker create body: Config fields and a HostConfig."""
    return {"Image": IMAGE, **config, "HostConfig": host_config or {}}


# Traefik v3 (pkg/provider/docker): the moby client pins API 1.24 and negotiates.
TRAEFIK: list[Any] = [
    ("negotiation ping", "HEAD", "/_ping", None, ALLOW),
    ("ping fallback", "GET", "/_ping", None, ALLOW),
    ("ServerVersion", "GET", "/v1.24/version", None, ALLOW),
    ("ContainerList all", "GET", "/v1.24/containers/json?all=1", None, ALLOW),
    ("ContainerInspect", "GET", "/v1.24/containers/3f2a9c/json", None, ALLOW),
    (
        "Events type=container",
        "GET",
        "/v1.24/events?filters=%7B%22type%22%3A%7B%22container%22%3Atrue%7D%7D",
        None,
        ALLOW,
    ),
    ("swarm ServiceList", "GET", "/v1.24/services", None, ALLOW),
    (
        "swarm NetworkList scope=swarm",
        "GET",
        "/v1.24/networks?filters=%7B%22scope%22%3A%7B%22swarm%22%3Atrue%7D%7D",
        None,
        ALLOW,
    ),
    (
        "swarm TaskList",
        "GET",
        "/v1.24/tasks?filters=%7B%22service%22%3A%7B%22web%22%3Atrue%7D%7D",
        None,
        ALLOW,
    ),
    ("swarm NodeInspect", "GET", "/v1.24/nodes/n1", None, ALLOW),
    ("no creates", "POST", "/v1.24/containers/create", create(), "operation-not-allowed"),
    ("no exec", "POST", "/v1.24/containers/web/exec", {"Cmd": ["sh"]}, "operation-not-allowed"),
    ("no logs", "GET", "/v1.24/containers/web/logs?stdout=1", None, "operation-not-allowed"),
    (
        "no file copies",
        "GET",
        "/v1.24/containers/web/archive?path=/etc",
        None,
        "operation-not-allowed",
    ),
    ("no exports", "GET", "/v1.24/containers/web/export", None, "operation-not-allowed"),
    ("no image saves", "GET", "/v1.24/images/get?names=nginx", None, "operation-not-allowed"),
    ("no secrets", "GET", "/v1.24/secrets", None, "operation-not-allowed"),
    ("no unlock key", "GET", "/v1.24/swarm/unlockkey", None, "operation-not-allowed"),
    ("no heap dumps", "GET", "/debug/pprof/heap", None, "operation-not-allowed"),
    ("no info it never reads", "GET", "/v1.24/info", None, "operation-not-allowed"),
    ("no stops", "POST", "/v1.24/containers/web/stop", None, "operation-not-allowed"),
]

# Homepage (dockerode: listContainers, inspect, stats, swarm services and
# tasks) and Dozzle (moby client: Ping, Info, ServerVersion, ContainerList,
# ContainerInspect, ContainerLogs, ContainerStats, Events).
DASHBOARD: list[Any] = [
    ("Dozzle negotiation ping", "HEAD", "/_ping", None, ALLOW),
    ("Dozzle Info", "GET", "/v1.41/info", None, ALLOW),
    ("Dozzle ServerVersion", "GET", "/v1.41/version", None, ALLOW),
    ("listContainers all", "GET", "/containers/json?all=true", None, ALLOW),
    ("container inspect", "GET", "/containers/web/json", None, ALLOW),
    ("Homepage stats once", "GET", "/containers/web/stats?stream=false", None, ALLOW),
    ("Dozzle stats stream", "GET", "/v1.41/containers/web/stats?stream=1", None, ALLOW),
    (
        "Dozzle log stream",
        "GET",
        "/v1.41/containers/web/logs?follow=1&stdout=1&stderr=1&timestamps=1&since=0",
        None,
        ALLOW,
    ),
    ("Dozzle events", "GET", "/v1.41/events", None, ALLOW),
    (
        "Homepage swarm listServices",
        "GET",
        "/services?filters=%7B%22label%22%3A%5B%22homepage.group%22%5D%7D",
        None,
        ALLOW,
    ),
    ("Homepage getService.inspect", "GET", "/services/web", None, ALLOW),
    (
        "Homepage listTasks",
        "GET",
        "/tasks?filters=%7B%22service%22%3A%5B%22web%22%5D%7D",
        None,
        ALLOW,
    ),
    ("no actions", "POST", "/v1.41/containers/web/restart", None, "operation-not-allowed"),
    (
        "no shell",
        "POST",
        "/v1.41/containers/web/exec",
        {"Cmd": ["sh"], "Tty": True, "AttachStdin": True},
        "operation-not-allowed",
    ),
    ("no attach", "POST", "/v1.41/containers/web/attach?stream=1", None, "operation-not-allowed"),
    ("no creates", "POST", "/v1.41/containers/create", create(), "operation-not-allowed"),
    ("no file copies", "GET", "/containers/web/archive?path=/", None, "operation-not-allowed"),
    ("no removals", "DELETE", "/v1.41/containers/web?force=1", None, "operation-not-allowed"),
    ("no service logs", "GET", "/v1.41/services/web/logs", None, "operation-not-allowed"),
]

# Watchtower (pkg/container/client.go), API 1.25 unless DOCKER_API_VERSION says otherwise.
# The HostConfig of `docker inspect` on Docker Engine 20.10 for a container
# run with a port, a restart policy and a bind: Watchtower sends it back whole.
DOCKER_INSPECTED_HOST_CONFIG: dict[str, Any] = {
    "Binds": ["/srv/web/html:/usr/share/nginx/html:ro"],
    "CgroupnsMode": "host",  # what Docker chose on a cgroup v1 host
    "IpcMode": "private",
    "LogConfig": {"Config": {}, "Type": "json-file"},
    "MaskedPaths": [
        "/proc/asound",
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
    ],
    "NetworkMode": "default",
    "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
    "ReadonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    "RestartPolicy": {"MaximumRetryCount": 0, "Name": "unless-stopped"},
    "Runtime": "runc",
    "ShmSize": 67108864,
}
# What Watchtower would send for the same container without the fields the
# engine filled in at create (see docs/recipes.md, "Watchtower: limits").
USER_HOST_CONFIG = {
    key: DOCKER_INSPECTED_HOST_CONFIG[key]
    for key in ("Binds", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy", "Runtime")
}
RECREATE = "/v1.25/containers/create?name=web"
WATCHTOWER: list[Any] = [
    (
        "ListContainers status filter",
        "GET",
        "/v1.25/containers/json?filters=%7B%22status%22%3A%5B%22running%22%5D%7D",
        None,
        ALLOW,
    ),
    ("ContainerInspect", "GET", "/v1.25/containers/web/json", None, ALLOW),
    ("ImageInspectWithRaw", "GET", "/v1.25/images/sha256:4f1b2c/json", None, ALLOW),
    ("ImagePull", "POST", "/v1.25/images/create?fromImage=nginx&tag=1.27", None, ALLOW),
    ("ContainerKill stop signal", "POST", "/v1.25/containers/web/kill?signal=SIGTERM", None, ALLOW),
    ("ContainerRemove", "DELETE", "/v1.25/containers/web?force=1&v=1", None, ALLOW),
    (
        "ContainerCreate, fields the user set",
        "POST",
        RECREATE,
        create(USER_HOST_CONFIG, Labels={"com.centurylinklabs.watchtower.enable": "true"}),
        ALLOW,
    ),
    (
        "ContainerCreate from Docker's whole inspect, cgroup v1 host (limit)",
        "POST",
        RECREATE,
        create(DOCKER_INSPECTED_HOST_CONFIG),
        "no-host-namespaces",
    ),
    (
        "ContainerCreate from Docker's whole inspect, cgroup v2 host (limit)",
        "POST",
        RECREATE,
        create({**DOCKER_INSPECTED_HOST_CONFIG, "CgroupnsMode": "private"}),
        "masked-paths",
    ),
    (
        "ContainerCreate from Podman 4.3's compat inspect (limit)",
        "POST",
        RECREATE,
        create({**USER_HOST_CONFIG, "Runtime": "oci", "CgroupnsMode": ""}),
        "known-runtimes",
    ),
    ("NetworkDisconnect", "POST", "/v1.25/networks/front/disconnect", {"Container": "web"}, ALLOW),
    (
        "NetworkConnect",
        "POST",
        "/v1.25/networks/back/connect",
        {"Container": "web", "EndpointConfig": {"Aliases": ["web"]}},
        ALLOW,
    ),
    ("ContainerStart", "POST", "/v1.25/containers/web/start", None, ALLOW),
    ("self-update ContainerRename", "POST", "/v1.25/containers/wt/rename?name=wt-old", None, ALLOW),
    ("--cleanup ImageRemove", "DELETE", "/v1.25/images/sha256:4f1b2c?force=0", None, ALLOW),
    (
        "lifecycle hook ContainerExecCreate",
        "POST",
        "/v1.25/containers/web/exec",
        {"Cmd": ["sh", "-c", "/pre-update.sh"], "AttachStdout": True, "AttachStderr": True},
        ALLOW,
    ),
    ("lifecycle hook ContainerExecStart", "POST", "/v1.25/exec/e1/start", {"Detach": False}, ALLOW),
    ("lifecycle hook ContainerExecInspect", "GET", "/v1.25/exec/e1/json", None, ALLOW),
    (
        "a watched container that was privileged",
        "POST",
        RECREATE,
        create({**USER_HOST_CONFIG, "Privileged": True}),
        "no-privileged",
    ),
    (
        "its own successor, with the engine socket",
        "POST",
        "/v1.25/containers/create?name=watchtower",
        create({"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}),
        "bind-mount-paths",
    ),
    (
        "a privileged hook",
        "POST",
        "/v1.25/containers/web/exec",
        {"Cmd": ["sh"], "Privileged": True},
        "no-privileged",
    ),
    ("no builds", "POST", "/v1.25/build?t=x", b"", "operation-not-allowed"),
    (
        "no file copies",
        "GET",
        "/v1.25/containers/web/archive?path=/",
        None,
        "operation-not-allowed",
    ),
    ("no volume creates", "POST", "/v1.25/volumes/create", {"Name": "v"}, "operation-not-allowed"),
]

# Portainer: its snapshots and the UI's pages through its Docker API proxy.
PORTAINER: list[Any] = [
    ("snapshot Info", "GET", "/v1.41/info", None, ALLOW),
    ("snapshot ServerVersion", "GET", "/v1.41/version", None, ALLOW),
    ("snapshot ContainerList", "GET", "/v1.41/containers/json?all=1", None, ALLOW),
    ("snapshot ImageList", "GET", "/v1.41/images/json", None, ALLOW),
    ("snapshot VolumeList", "GET", "/v1.41/volumes", None, ALLOW),
    ("snapshot NetworkList", "GET", "/v1.41/networks", None, ALLOW),
    ("snapshot NodeList", "GET", "/v1.41/nodes", None, ALLOW),
    ("snapshot ServiceList", "GET", "/v1.41/services", None, ALLOW),
    ("disk usage", "GET", "/v1.41/system/df", None, ALLOW),
    (
        "create form",
        "POST",
        "/v1.41/containers/create?name=web",
        create(
            {
                "Binds": ["/srv/web/data:/data"],
                "PortBindings": {"80/tcp": [{"HostPort": "8080"}]},
                "RestartPolicy": {"Name": "unless-stopped"},
            },
            ExposedPorts={"80/tcp": {}},
        ),
        ALLOW,
    ),
    (
        "console",
        "POST",
        "/v1.41/containers/web/exec",
        {"AttachStdin": True, "AttachStdout": True, "Tty": True, "Cmd": ["sh"], "User": ""},
        ALLOW,
    ),
    ("console stream", "POST", "/v1.41/exec/e1/start", {"Tty": True}, ALLOW),
    ("console resize", "POST", "/v1.41/exec/e1/resize?h=40&w=120", None, ALLOW),
    ("logs", "GET", "/v1.41/containers/web/logs?stdout=1&stderr=1&tail=100", None, ALLOW),
    ("stats", "GET", "/v1.41/containers/web/stats", None, ALLOW),
    ("image export", "GET", "/v1.41/images/get?names=nginx", None, ALLOW),
    ("image import (upload)", "POST", "/v1.41/images/load", b"", ALLOW),
    ("image build", "POST", "/v1.41/build?t=web%3A1", b"", ALLOW),
    ("registry login", "POST", "/v1.41/auth", {"username": "u", "password": "p"}, ALLOW),
    (
        "NFS volume",
        "POST",
        "/v1.41/volumes/create",
        {
            "Name": "share",
            "Driver": "local",
            "DriverOpts": {"type": "nfs", "o": "addr=10.0.0.2,rw", "device": ":/export"},
        },
        ALLOW,
    ),
    (
        "service create",
        "POST",
        "/v1.41/services/create",
        {"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": IMAGE}}},
        ALLOW,
    ),
    ("swarm page", "GET", "/v1.41/swarm", None, ALLOW),
    ("secret create", "POST", "/v1.41/secrets/create", {"Name": "s", "Data": "eA=="}, ALLOW),
    ("config create", "POST", "/v1.41/configs/create", {"Name": "c", "Data": "eA=="}, ALLOW),
    ("node availability", "POST", "/v1.41/nodes/n1/update?version=3", {"Role": "worker"}, ALLOW),
    ("driver lists", "GET", "/v1.41/plugins", None, ALLOW),
    (
        "the privileged toggle",
        "POST",
        "/v1.41/containers/create",
        create({"Privileged": True}),
        "no-privileged",
    ),
    (
        "a host root bind",
        "POST",
        "/v1.41/containers/create",
        create({"Binds": ["/:/host"]}),
        "bind-mount-paths",
    ),
    (
        "host network",
        "POST",
        "/v1.41/containers/create",
        create({"NetworkMode": "host"}),
        "no-host-namespaces",
    ),
    (
        "SYS_ADMIN",
        "POST",
        "/v1.41/containers/create",
        create({"CapAdd": ["SYS_ADMIN"]}),
        "default-capabilities",
    ),
    (
        "a service binding /etc",
        "POST",
        "/v1.41/services/create",
        {
            "Name": "web",
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": IMAGE,
                    "Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/e"}],
                }
            },
        },
        "bind-mount-paths",
    ),
    (
        "a privileged console",
        "POST",
        "/v1.41/containers/web/exec",
        {"Cmd": ["sh"], "Privileged": True},
        "no-privileged",
    ),
    ("swarm unlock key", "GET", "/v1.41/swarm/unlockkey", None, "operation-not-allowed"),
    ("leaving the swarm", "POST", "/v1.41/swarm/leave?force=1", None, "operation-not-allowed"),
    ("node removal", "DELETE", "/v1.41/nodes/n1", None, "operation-not-allowed"),
    (
        "plugin install",
        "POST",
        "/v1.41/plugins/pull?remote=x",
        [{"Name": "network", "Value": ["host"]}],
        "operation-not-allowed",
    ),
    ("BuildKit session", "POST", "/v1.41/session", None, "operation-not-allowed"),
]


def _ryuk(binds: list[str], privileged: bool = False) -> dict[str, Any]:
    """Testcontainers' Ryuk reaper as testcontainers-python 4 creates it."""
    return create(
        {
            "AutoRemove": True,
            "Binds": binds,
            "Privileged": privileged,
            "PortBindings": {"8080/tcp": [{"HostIp": "", "HostPort": ""}]},
        },
        Env=["RYUK_RECONNECTION_TIMEOUT=10s"],
        ExposedPorts={"8080/tcp": {}},
        Labels={"org.testcontainers": "true", "org.testcontainers.lang": "python"},
    )


TESTCONTAINERS: list[Any] = [
    ("version at start-up", "GET", "/version", None, ALLOW),
    ("info at start-up", "GET", "/v1.41/info", None, ALLOW),
    ("image inspect", "GET", "/v1.41/images/redis:7/json", None, ALLOW),
    ("image pull", "POST", "/v1.41/images/create?fromImage=redis&tag=7", None, ALLOW),
    (
        "container with labels, ports and env",
        "POST",
        "/v1.41/containers/create",
        create(
            {
                "PortBindings": {"6379/tcp": [{"HostIp": "", "HostPort": ""}]},
                "NetworkMode": "tc-net",
                "Tmpfs": {"/data": "rw"},
            },
            Env=["REDIS_ARGS=--save ''"],
            ExposedPorts={"6379/tcp": {}},
            Labels={"org.testcontainers": "true", "org.testcontainers.session-id": "a1"},
        ),
        ALLOW,
    ),
    ("copy a file in", "PUT", "/v1.41/containers/c1/archive?path=/etc", b"", ALLOW),
    ("copy a file out", "GET", "/v1.41/containers/c1/archive?path=/tmp/out", None, ALLOW),
    ("start", "POST", "/v1.41/containers/c1/start", None, ALLOW),
    ("log wait strategy", "GET", "/v1.41/containers/c1/logs?stdout=1&stderr=1", None, ALLOW),
    (
        "port-listening exec probe",
        "POST",
        "/v1.41/containers/c1/exec",
        {"Cmd": ["/bin/sh", "-c", "cat /proc/net/tcp* | grep :18EB"], "AttachStdout": True},
        ALLOW,
    ),
    (
        "network create",
        "POST",
        "/v1.41/networks/create",
        {"Name": "tc-net", "CheckDuplicate": True},
        ALLOW,
    ),
    ("remove with volumes", "DELETE", "/v1.41/containers/c1?force=1&v=1", None, ALLOW),
    ("ImageFromDockerfile", "POST", "/v1.41/build?t=tc%2Fapp&rm=1", b"", ALLOW),
    (
        "Ryuk with the default socket path (given a nested socket)",
        "POST",
        "/v1.41/containers/create?name=testcontainers-ryuk-a1",
        _ryuk(["/var/run/docker.sock:/var/run/docker.sock:rw"]),
        ALLOW,
    ),
    (
        "Ryuk with sockproxy's socket (DOCKER_HOST)",
        "POST",
        "/v1.41/containers/create?name=testcontainers-ryuk-a1",
        _ryuk([f"{OWN_SOCKET}:/var/run/docker.sock:rw"]),
        "no-engine-socket",
    ),
    (
        "Ryuk privileged (TESTCONTAINERS_RYUK_PRIVILEGED)",
        "POST",
        "/v1.41/containers/create",
        _ryuk([], privileged=True),
        "no-privileged",
    ),
    (
        "a privileged test container",
        "POST",
        "/v1.41/containers/create",
        create({"Privileged": True}),
        "no-privileged",
    ),
    (
        "a test container binding /etc",
        "POST",
        "/v1.41/containers/create",
        create({"Binds": ["/etc:/etc:ro"]}),
        "bind-mount-paths",
    ),
    ("Podman pods", "POST", "/v4.3.1/libpod/pods/create", {"name": "p"}, "operation-not-allowed"),
    ("BuildKit session", "POST", "/v1.41/session", None, "operation-not-allowed"),
]

# GitLab Runner's docker executor (helpers/docker/client.go, executors/docker).
RUNNER_LABELS = {"com.gitlab.gitlab-runner.job.id": "42", "com.gitlab.gitlab-runner.type": "build"}
CACHE = "runner-x1-project-7-concurrent-0-cache-3c3f060a0374fc8bc39395164f415a70"
NETWORK = "runner-x1-project-7-concurrent-0-job-42-network"


def _build(**host_config: Any) -> dict[str, Any]:
    """The build container as createHostConfig and createContainerConfig shape it."""
    return create(
        {
            "Binds": [f"{CACHE}:/cache", f"{CACHE}-builds:/builds"],
            "NetworkMode": NETWORK,
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": "json-file"},
            "Privileged": False,
            **host_config,
        },
        Cmd=["sh", "-c", "if [ -x /usr/local/bin/bash ]; then exec /usr/local/bin/bash; fi"],
        AttachStdin=True,
        OpenStdin=True,
        StdinOnce=True,
        Labels=RUNNER_LABELS,
    )


GITLAB_RUNNER: list[Any] = [
    ("negotiation ping", "HEAD", "/_ping", None, ALLOW),
    ("Info", "GET", "/v1.41/info", None, ALLOW),
    ("ServerVersion", "GET", "/v1.41/version", None, ALLOW),
    ("ImageInspectWithRaw", "GET", "/v1.41/images/alpine:3.20/json", None, ALLOW),
    ("ImagePullBlocking", "POST", "/v1.41/images/create?fromImage=alpine&tag=3.20", None, ALLOW),
    ("prebuilt helper ImageLoad", "POST", "/v1.41/images/load?quiet=1", b"", ALLOW),
    (
        "prebuilt helper ImageImportBlocking",
        "POST",
        "/v1.41/images/create?fromSrc=-&repo=registry.gitlab.com%2Fgitlab-org%2Fgitlab-runner%2Fgitlab-runner-helper&tag=x86_64-v17.0.0",
        b"",
        ALLOW,
    ),
    ("ImageTag", "POST", "/v1.41/images/sha256:9a1b/tag?repo=helper&tag=x86_64-v17", None, ALLOW),
    (
        "VolumeCreate cache",
        "POST",
        "/v1.41/volumes/create",
        {"Name": CACHE, "Labels": {"com.gitlab.gitlab-runner.type": "cache"}},
        ALLOW,
    ),
    ("VolumeInspect", "GET", f"/v1.41/volumes/{CACHE}", None, ALLOW),
    ("VolumeList", "GET", "/v1.41/volumes?filters=%7B%22label%22%3A%5B%22a%22%5D%7D", None, ALLOW),
    (
        "NetworkCreate per build",
        "POST",
        "/v1.41/networks/create",
        {"Name": NETWORK, "CheckDuplicate": True, "Labels": RUNNER_LABELS},
        ALLOW,
    ),
    ("NetworkInspect", "GET", f"/v1.41/networks/{NETWORK}", None, ALLOW),
    (
        "ContainerCreate build",
        "POST",
        "/v1.41/containers/create?name=runner-x1-build",
        _build(),
        ALLOW,
    ),
    (
        "ContainerCreate service with a host path from the config",
        "POST",
        "/v1.41/containers/create",
        _build(Binds=["/srv/gitlab-runner/fixtures:/fixtures:ro"]),
        ALLOW,
    ),
    (
        "ContainerAttach script stdin",
        "POST",
        "/v1.41/containers/c1/attach?stdin=1&stdout=1&stderr=1&stream=1",
        None,
        ALLOW,
    ),
    ("ContainerStart", "POST", "/v1.41/containers/c1/start", None, ALLOW),
    ("ContainerWait", "POST", "/v1.41/containers/c1/wait?condition=not-running", None, ALLOW),
    (
        "ContainerLogs health check",
        "GET",
        "/v1.41/containers/hc/logs?stdout=1&stderr=1",
        None,
        ALLOW,
    ),
    ("ContainerList stale", "GET", "/v1.41/containers/json?all=1&filters=%7B%7D", None, ALLOW),
    ("ContainerStop", "POST", "/v1.41/containers/c1/stop", None, ALLOW),
    ("ContainerKill", "POST", "/v1.41/containers/c1/kill?signal=SIGKILL", None, ALLOW),
    ("ContainerRemove", "DELETE", "/v1.41/containers/c1?v=1&force=1", None, ALLOW),
    (
        "terminal ContainerExecCreate",
        "POST",
        "/v1.41/containers/c1/exec",
        {"Cmd": ["sh"], "Tty": True, "AttachStdin": True},
        ALLOW,
    ),
    ("terminal ContainerExecAttach", "POST", "/v1.41/exec/e1/start", {"Tty": True}, ALLOW),
    (
        "NetworkDisconnect",
        "POST",
        f"/v1.41/networks/{NETWORK}/disconnect",
        {"Container": "c1", "Force": True},
        ALLOW,
    ),
    ("NetworkRemove", "DELETE", f"/v1.41/networks/{NETWORK}", None, ALLOW),
    ("VolumeRemove", "DELETE", f"/v1.41/volumes/{CACHE}", None, ALLOW),
    (
        "privileged = true (Docker in Docker)",
        "POST",
        "/v1.41/containers/create",
        _build(Privileged=True),
        "no-privileged",
    ),
    (
        'volumes = ["/var/run/docker.sock:/var/run/docker.sock"]',
        "POST",
        "/v1.41/containers/create",
        _build(Binds=["/var/run/docker.sock:/var/run/docker.sock"]),
        "bind-mount-paths",
    ),
    (
        "the runner's own socket, bound from an allowed place",
        "POST",
        "/v1.41/containers/create",
        _build(Binds=[f"{OWN_SOCKET}:/var/run/docker.sock"]),
        "no-engine-socket",
    ),
    (
        'cap_add = ["SYS_ADMIN"]',
        "POST",
        "/v1.41/containers/create",
        _build(CapAdd=["SYS_ADMIN"]),
        "default-capabilities",
    ),
    (
        'devices = ["/dev/kvm"]',
        "POST",
        "/v1.41/containers/create",
        _build(
            Devices=[
                {
                    "PathOnHost": "/dev/kvm",
                    "PathInContainer": "/dev/kvm",
                    "CgroupPermissions": "rwm",
                }
            ]
        ),
        "no-devices",
    ),
    (
        'security_opt = ["seccomp:unconfined"]',
        "POST",
        "/v1.41/containers/create",
        _build(SecurityOpt=["seccomp:unconfined"]),
        "confined",
    ),
    (
        'volumes_from = ["other"]',
        "POST",
        "/v1.41/containers/create",
        _build(VolumesFrom=["other"]),
        "volumes-from",
    ),
    (
        'network_mode = "host"',
        "POST",
        "/v1.41/containers/create",
        _build(NetworkMode="host"),
        "no-host-namespaces",
    ),
    ("no builds: jobs don't get the socket", "POST", "/v1.41/build", b"", "operation-not-allowed"),
    ("no exports", "GET", "/v1.41/containers/c1/export", None, "operation-not-allowed"),
    ("no image saves", "GET", "/v1.41/images/get?names=x", None, "operation-not-allowed"),
    ("no system prune", "POST", "/v4.3.1/libpod/system/prune", None, "operation-not-allowed"),
]

# GitHub Actions runner (DockerCommandManager.cs, ContainerInfo.cs): the docker CLI.
WORK = "/home/runner/actions-runner/_work"


def _job_container(*binds: str) -> dict[str, Any]:
    """`docker create` of a container job as the runner words it."""
    return create(
        {
            "Binds": [*binds, f"{WORK}:/__w", f"{WORK}/../externals:/__e:ro"],
            "NetworkMode": "github_network_5f1c",
        },
        Entrypoint=["tail"],
        Cmd=["-f", "/dev/null"],
        WorkingDir="/__w/app/app",
        Env=["GITHUB_ACTIONS=true", "CI=true", "HOME=/github/home"],
        Labels={"a1b2c3": ""},
    )


GITHUB_RUNNER: list[Any] = [
    ("docker version", "GET", "/v1.41/version", None, ALLOW),
    ("docker ps --filter label", "GET", "/v1.41/containers/json?all=1&filters=%7B%7D", None, ALLOW),
    (
        "docker network prune --filter label",
        "POST",
        "/v1.41/networks/prune?filters=%7B%7D",
        None,
        ALLOW,
    ),
    (
        "docker network create --label",
        "POST",
        "/v1.41/networks/create",
        {"Name": "github_network_5f1c", "Labels": {"a1b2c3": ""}},
        ALLOW,
    ),
    (
        "docker login",
        "POST",
        "/v1.41/auth",
        {"username": "u", "password": "p", "serveraddress": "ghcr.io"},
        ALLOW,
    ),
    ("docker pull", "POST", "/v1.41/images/create?fromImage=node&tag=20", None, ALLOW),
    (
        "container job, as the runner creates it (socket mounted)",
        "POST",
        "/v1.41/containers/create?name=job",
        _job_container("/var/run/docker.sock:/var/run/docker.sock"),
        "bind-mount-paths",
    ),
    (
        "container job without the socket (container hooks)",
        "POST",
        "/v1.41/containers/create?name=job",
        _job_container(),
        ALLOW,
    ),
    ("docker start", "POST", "/v1.41/containers/job/start", None, ALLOW),
    ("docker inspect --format env", "GET", "/v1.41/containers/job/json", None, ALLOW),
    (
        "step: docker exec -i --workdir -e",
        "POST",
        "/v1.41/containers/job/exec",
        {
            "Cmd": ["sh", "-e", "/__w/_temp/step.sh"],
            "WorkingDir": "/__w/app/app",
            "AttachStdin": True,
        },
        ALLOW,
    ),
    ("docker exec: its exit code", "GET", "/v1.41/exec/e1/json", None, ALLOW),
    (
        "docker logs --details",
        "GET",
        "/v1.41/containers/svc/logs?details=1&stdout=1&stderr=1",
        None,
        ALLOW,
    ),
    (
        "Dockerfile action: docker build -t -f",
        "POST",
        "/v1.41/build?t=abc%3Alatest&dockerfile=Dockerfile",
        b"",
        ALLOW,
    ),
    ("docker rm --force", "DELETE", "/v1.41/containers/job?force=1", None, ALLOW),
    ("docker network rm", "DELETE", "/v1.41/networks/github_network_5f1c", None, ALLOW),
    (
        "a --privileged container option",
        "POST",
        "/v1.41/containers/create",
        create({"Privileged": True}),
        "no-privileged",
    ),
    (
        "a step binding the host's root",
        "POST",
        "/v1.41/containers/create",
        create({"Binds": ["/:/host"]}),
        "bind-mount-paths",
    ),
    (
        "a step with --pid host",
        "POST",
        "/v1.41/containers/create",
        create({"PidMode": "host"}),
        "no-host-namespaces",
    ),
    ("BuildKit (buildx)", "POST", "/v1.41/session", None, "operation-not-allowed"),
]

# A developer workstation: docker CLI, compose, podman --remote against rootless Podman.
LIBPOD = "/v4.3.1/libpod"
WORKSTATION: list[Any] = [
    (
        "podman run -v ~/src/app:/src --userns keep-id",
        "POST",
        f"{LIBPOD}/containers/create",
        {
            "image": IMAGE,
            "mounts": [
                {
                    "destination": "/src",
                    "source": "/home/alice/src/app",
                    "type": "bind",
                    "options": ["rbind"],
                }
            ],
            "userns": {"nsmode": "keep-id"},
        },
        ALLOW,
    ),
    (
        "docker run -v $PWD:/work",
        "POST",
        "/v1.41/containers/create",
        create({"Binds": ["/home/alice/src/app:/work"]}),
        ALLOW,
    ),
    ("podman pod create", "POST", f"{LIBPOD}/pods/create", {"name": "dev"}, ALLOW),
    ("podman generate systemd", "GET", f"{LIBPOD}/generate/web/systemd?new=true", None, ALLOW),
    ("podman kube generate", "GET", f"{LIBPOD}/generate/kube?names=web", None, ALLOW),
    ("podman manifest create", "POST", f"{LIBPOD}/manifests/app%3A1?images=a", None, ALLOW),
    (
        "podman --remote build (Podman 4.3 sends nsoptions user=host: no user namespace)",
        "POST",
        f"{LIBPOD}/build?t=app&nsoptions=%5B%7B%22Name%22%3A%22user%22%2C%22Host%22%3Atrue%7D%5D",
        b"",
        ALLOW,
    ),
    ("docker compose events", "GET", "/v1.41/events?filters=%7B%7D", None, ALLOW),
    (
        "a bind of ~/.bashrc",
        "POST",
        "/v1.41/containers/create",
        create({"Binds": ["/home/alice/.bashrc:/root/.bashrc"]}),
        "bind-mount-paths",
    ),
    (
        "a bind of ~/.config (holds systemd user units)",
        "POST",
        f"{LIBPOD}/containers/create",
        {
            "image": IMAGE,
            "mounts": [{"destination": "/c", "source": "/home/alice/.config", "type": "bind"}],
        },
        "bind-mount-paths",
    ),
    (
        "a bind of ~/.local/bin",
        "POST",
        "/v1.41/containers/create",
        create({"Binds": ["/home/alice/.local/bin:/b"]}),
        "bind-mount-paths",
    ),
    (
        "a bind of ~/.ssh",
        "POST",
        "/v1.41/containers/create",
        create({"Binds": ["/home/alice/.ssh:/root/.ssh:ro"]}),
        "bind-mount-paths",
    ),
    (
        "a bind of the home directory",
        "POST",
        "/v1.41/containers/create",
        create({"Binds": ["/home/alice:/h"]}),
        "bind-mount-paths",
    ),
    (
        "podman secret create (shell driver)",
        "POST",
        f"{LIBPOD}/secrets/create?name=s&driver=shell",
        b"x",
        "operation-not-allowed",
    ),
    ("podman mount", "POST", f"{LIBPOD}/containers/web/mount", None, "operation-not-allowed"),
    (
        "podman image scp",
        "POST",
        f"{LIBPOD}/images/scp/app?destination=h",
        None,
        "operation-not-allowed",
    ),
    (
        "--security-opt label=disable",
        "POST",
        "/v1.41/containers/create",
        create({"SecurityOpt": ["label=disable"]}),
        "confined",
    ),
    (
        "a dev container with SYS_PTRACE",
        "POST",
        "/v1.41/containers/create",
        create({"CapAdd": ["SYS_PTRACE"]}),
        "default-capabilities",
    ),
    (
        "podman run --userns host",
        "POST",
        f"{LIBPOD}/containers/create",
        {"image": IMAGE, "userns": {"nsmode": "host"}},
        "no-host-namespaces",
    ),
    (
        "podman run --privileged",
        "POST",
        f"{LIBPOD}/containers/create",
        {"image": IMAGE, "privileged": True},
        "no-privileged",
    ),
]

# (engine the proxy runs in front of, rows)
TABLES: dict[str, tuple[str, list[Any]]] = {
    "traefik": ("docker", TRAEFIK),
    "dashboard": ("docker", DASHBOARD),
    "watchtower": ("docker", WATCHTOWER),
    "portainer": ("docker", PORTAINER),
    "testcontainers": ("docker", TESTCONTAINERS),
    "gitlab-runner": ("docker", GITLAB_RUNNER),
    "github-runner": ("docker", GITHUB_RUNNER),
    "workstation": ("podman", WORKSTATION),
}


def _rows() -> Iterator[Any]:
    for name, (engine, rows) in TABLES.items():
        for label, method, target, body, expected in rows:
            yield pytest.param(name, engine, method, target, body, expected, id=f"{name}: {label}")


def test_every_recipe_has_a_table() -> None:
    assert sorted(TABLES) == sorted(RECIPES)


@pytest.mark.parametrize(("name", "engine", "method", "target", "body", "expected"), list(_rows()))
def test_recipe_decides_the_tools_requests(
    name: str, engine: str, method: str, target: str, body: Any, expected: str
) -> None:
    assert decide(load(name, engine), method, target, body) == expected


@pytest.mark.parametrize("name", ["portainer", "testcontainers", "github-runner"])
def test_legacy_builds_are_refused_on_podman_without_network_isolation(name: str) -> None:
    """Podman runs RUN steps of a compat /build without nsoptions in the host's network."""
    assert decide(load(name, "podman"), "POST", "/v1.41/build?t=x", b"") == "no-build-host-access"
