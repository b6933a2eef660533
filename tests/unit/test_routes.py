"""Classify stage: every request names the endpoint both engines would run, or is refused."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockproxy.routes import (
    ENDPOINTS,
    SECTIONS,
    Api,
    Endpoint,
    Engine,
    Prefix,
    Route,
    classify,
    clean_path,
)

ROOT = Path(__file__).resolve().parents[2]
D, L = Api.DOCKER, Api.LIBPOD
IMAGE = "localhost:5000/team/app:1.0"

# One row per endpoint family in each flavour: (method, target, operation, api, params).
CATALOGUE = [
    # system
    ("GET", "/_ping", "system.ping", D, {}),
    ("HEAD", "/v1.41/_ping", "system.ping", D, {}),
    ("GET", "/libpod/_ping", "system.ping", L, {}),
    ("HEAD", "/v4.3.1/libpod/_ping", "system.ping", L, {}),
    ("GET", "/v1.43/version", "system.version", D, {}),
    ("GET", "/v4.3.1/libpod/version", "system.version", L, {}),
    ("GET", "/info", "system.info", D, {}),
    ("GET", "/v4.3.1/libpod/info", "system.info", L, {}),
    ("GET", "/v1.41/events?since=1", "system.events", D, {}),
    ("GET", "/v4.3.1/libpod/events", "system.events", L, {}),
    ("GET", "/v1.41/system/df", "system.df", D, {}),
    ("GET", "/v4.3.1/libpod/system/df", "system.df", L, {}),
    ("POST", "/v1.41/auth", "system.auth", D, {}),
    ("POST", "/v4.3.1/libpod/system/prune", "system.prune", L, {}),
    ("GET", "/v4.3.1/libpod/swagger", "system.swagger", L, {}),
    ("OPTIONS", "/v1.41/containers/create", "system.options", D, {"path": "containers/create"}),
    ("GET", "/debug/pprof/heap", "debug.pprof", D, {"name": "heap"}),
    ("GET", "/debug/vars", "debug.vars", D, {}),
    # container
    ("GET", "/v1.41/containers/json?all=1", "container.list", D, {}),
    ("GET", "/v4.3.1/libpod/containers/json", "container.list", L, {}),
    ("POST", "/v1.41/containers/create?name=web", "container.create", D, {}),
    ("POST", "/v4.3.1/libpod/containers/create", "container.create", L, {}),
    ("GET", "/v1.41/containers/web/json", "container.inspect", D, {"id": "web"}),
    ("GET", "/v4.3.1/libpod/containers/web/json", "container.inspect", L, {"id": "web"}),
    ("POST", "/v1.41/containers/web/start", "container.start", D, {"id": "web"}),
    ("POST", "/v4.3.1/libpod/containers/web/start", "container.start", L, {"id": "web"}),
    ("POST", "/v1.41/containers/web/stop?t=3", "container.stop", D, {"id": "web"}),
    ("POST", "/v4.3.1/libpod/containers/web/kill", "container.kill", L, {"id": "web"}),
    ("POST", "/v1.41/containers/web/wait", "container.wait", D, {"id": "web"}),
    ("GET", "/v1.41/containers/web/logs", "container.logs", D, {"id": "web"}),
    ("GET", "/v4.3.1/libpod/containers/web/logs", "container.logs", L, {"id": "web"}),
    ("GET", "/v1.41/containers/web/stats", "container.stats", D, {"id": "web"}),
    ("GET", "/v4.3.1/libpod/containers/stats", "container.stats", L, {}),
    ("POST", "/v1.41/containers/web/update", "container.update", D, {"id": "web"}),
    ("POST", "/v4.3.1/libpod/containers/web/update", "container.update", L, {"id": "web"}),
    ("DELETE", "/v1.41/containers/web?force=1", "container.delete", D, {"id": "web"}),
    ("DELETE", "/v4.3.1/libpod/containers/web", "container.delete", L, {"id": "web"}),
    ("GET", "/v1.41/containers/web/export", "container.export", D, {"id": "web"}),
    ("HEAD", "/v1.41/containers/web/archive?path=/etc", "container.archive-info", D, {"id": "web"}),
    ("GET", "/v1.41/containers/web/archive?path=/etc", "container.archive-get", D, {"id": "web"}),
    ("PUT", "/v4.3.1/libpod/containers/web/archive", "container.archive-put", L, {"id": "web"}),
    ("POST", "/v1.41/containers/web/attach", "container.attach", D, {"id": "web"}),
    ("POST", "/v4.3.1/libpod/containers/web/attach", "container.attach", L, {"id": "web"}),
    ("GET", "/v1.41/containers/web/attach/ws", "container.attach-ws", D, {"id": "web"}),
    ("POST", "/v1.23/containers/web/copy", "container.copy", D, {"id": "web"}),
    ("POST", "/v1.41/containers/web/checkpoints", "container.checkpoint", D, {"id": "web"}),
    ("POST", "/v4.3.1/libpod/containers/web/checkpoint", "container.checkpoint", L, {"id": "web"}),
    ("POST", "/v4.3.1/libpod/containers/web/restore", "container.restore", L, {"id": "web"}),
    ("POST", "/v4.3.1/libpod/containers/web/mount", "container.mount", L, {"id": "web"}),
    ("GET", "/v4.3.1/libpod/containers/showmounted", "container.show-mounted", L, {}),
    ("GET", "/v4.3.1/libpod/containers/web/exists", "container.exists", L, {"id": "web"}),
    ("GET", "/v4.3.1/libpod/containers/web/healthcheck", "container.healthcheck", L, {"id": "web"}),
    ("POST", "/v1.41/containers/prune", "container.prune", D, {}),
    # exec
    ("POST", "/v1.41/containers/web/exec", "exec.create", D, {"id": "web"}),
    ("POST", "/v4.3.1/libpod/containers/web/exec", "exec.create", L, {"id": "web"}),
    ("POST", "/v1.24/exec/e1/start", "exec.start", D, {"id": "e1"}),
    ("POST", "/v4.3.1/libpod/exec/e1/start", "exec.start", L, {"id": "e1"}),
    ("POST", "/v1.41/exec/e1/resize?h=1&w=1", "exec.resize", D, {"id": "e1"}),
    ("GET", "/v4.3.1/libpod/exec/e1/json", "exec.inspect", L, {"id": "e1"}),
    # image
    ("GET", "/v1.41/images/json", "image.list", D, {}),
    ("GET", "/v4.3.1/libpod/images/json", "image.list", L, {}),
    ("POST", "/v1.41/images/create?fromImage=busybox&tag=1", "image.pull", D, {}),
    ("POST", "/v4.3.1/libpod/images/pull?reference=busybox", "image.pull", L, {}),
    ("POST", "/v1.41/images/create?fromSrc=-&repo=x", "image.import", D, {}),
    ("POST", "/v4.3.1/libpod/images/import", "image.import", L, {}),
    ("GET", f"/v1.41/images/{IMAGE}/json", "image.inspect", D, {"name": IMAGE}),
    ("GET", f"/v4.3.1/libpod/images/{IMAGE}/json", "image.inspect", L, {"name": IMAGE}),
    ("POST", f"/v1.41/images/{IMAGE}/push", "image.push", D, {"name": IMAGE}),
    ("POST", f"/v4.3.1/libpod/images/{IMAGE}/push", "image.push", L, {"name": IMAGE}),
    ("POST", "/v1.41/images/busybox/tag?repo=x", "image.tag", D, {"name": "busybox"}),
    ("POST", "/v4.3.1/libpod/images/busybox/untag", "image.untag", L, {"name": "busybox"}),
    ("DELETE", f"/v1.41/images/{IMAGE}", "image.delete", D, {"name": IMAGE}),
    ("DELETE", "/v4.3.1/libpod/images/remove?all=true", "image.delete", L, {}),
    ("GET", "/v1.41/images/get?names=busybox", "image.save", D, {}),
    ("GET", "/v4.3.1/libpod/images/export", "image.save", L, {}),
    ("POST", "/v1.41/images/load", "image.load", D, {}),
    ("GET", "/v1.41/images/search?term=x", "image.search", D, {}),
    ("POST", "/v1.41/commit?container=web", "image.commit", D, {}),
    ("POST", "/v4.3.1/libpod/commit", "image.commit", L, {}),
    ("GET", "/v4.3.1/libpod/images/busybox/tree", "image.tree", L, {"name": "busybox"}),
    ("POST", "/v4.3.1/libpod/images/scp/busybox", "image.scp", L, {"name": "busybox"}),
    # build
    ("POST", "/v1.41/build?t=x", "build.image", D, {}),
    ("POST", "/v4.3.1/libpod/build", "build.image", L, {}),
    ("POST", "/v1.41/build/prune", "build.prune", D, {}),
    ("POST", "/session", "build.session", D, {}),
    ("POST", "/grpc", "build.grpc", D, {}),
    # volume
    ("GET", "/v1.41/volumes", "volume.list", D, {}),
    ("GET", "/v4.3.1/libpod/volumes/json", "volume.list", L, {}),
    ("POST", "/v1.41/volumes/create", "volume.create", D, {}),
    ("POST", "/v4.3.1/libpod/volumes/create", "volume.create", L, {}),
    ("GET", "/v1.41/volumes/data", "volume.inspect", D, {"name": "data"}),
    ("GET", "/v4.3.1/libpod/volumes/data/json", "volume.inspect", L, {"name": "data"}),
    ("PUT", "/v1.43/volumes/data", "volume.update", D, {"name": "data"}),
    ("DELETE", "/v4.3.1/libpod/volumes/data", "volume.delete", L, {"name": "data"}),
    # network
    ("GET", "/v1.41/networks", "network.list", D, {}),
    ("GET", "/v4.3.1/libpod/networks/json", "network.list", L, {}),
    ("POST", "/v1.41/networks/create", "network.create", D, {}),
    ("POST", "/v4.3.1/libpod/networks/create", "network.create", L, {}),
    ("GET", "/v1.41/networks/net", "network.inspect", D, {"id": "net"}),
    ("GET", "/v4.3.1/libpod/networks/net", "network.inspect", L, {"id": "net"}),
    ("POST", "/v1.41/networks/net/connect", "network.connect", D, {"id": "net"}),
    ("POST", "/v4.3.1/libpod/networks/net/disconnect", "network.disconnect", L, {"id": "net"}),
    # plugin
    ("GET", "/v1.41/plugins", "plugin.list", D, {}),
    ("POST", "/v1.41/plugins/pull?remote=vieux/sshfs", "plugin.pull", D, {}),
    (
        "POST",
        "/v1.41/plugins/vieux/sshfs:latest/enable",
        "plugin.enable",
        D,
        {"name": "vieux/sshfs:latest"},
    ),
    (
        "POST",
        "/v1.41/plugins/vieux/sshfs:latest/set",
        "plugin.set",
        D,
        {"name": "vieux/sshfs:latest"},
    ),
    ("POST", "/v1.41/plugins/create?name=p", "plugin.create", D, {}),
    # swarm
    ("POST", "/v1.41/swarm/init", "swarm.init", D, {}),
    ("GET", "/v1.41/swarm/unlockkey", "swarm.unlockkey", D, {}),
    ("GET", "/v1.41/nodes/n1", "node.inspect", D, {"id": "n1"}),
    ("POST", "/v1.41/services/create", "service.create", D, {}),
    ("POST", "/v1.41/services/s1/update", "service.update", D, {"id": "s1"}),
    ("GET", "/v1.41/services/s1/logs", "service.logs", D, {"id": "s1"}),
    ("GET", "/v1.41/tasks/t1/logs", "task.logs", D, {"id": "t1"}),
    ("POST", "/v1.41/configs/create", "config.create", D, {}),
    # secret
    ("POST", "/v1.41/secrets/create", "secret.create", D, {}),
    ("POST", "/v4.3.1/libpod/secrets/create?name=s", "secret.create", L, {}),
    ("GET", "/v4.3.1/libpod/secrets/s/json", "secret.inspect", L, {"id": "s"}),
    ("DELETE", "/v1.41/secrets/s", "secret.delete", D, {"id": "s"}),
    ("DELETE", "/secret/s", "secret.delete", D, {"id": "s"}),  # Podman's unversioned spelling
    # distribution
    ("GET", f"/v1.41/distribution/{IMAGE}/json", "distribution.inspect", D, {"name": IMAGE}),
    # pod, manifest, kube, generate (libpod only)
    ("POST", "/v4.3.1/libpod/pods/create", "pod.create", L, {}),
    ("POST", "/v4.3.1/libpod/pods/p1/start", "pod.start", L, {"name": "p1"}),
    ("GET", "/v4.3.1/libpod/pods/stats", "pod.stats", L, {}),
    ("DELETE", "/v4.3.1/libpod/pods/p1", "pod.delete", L, {"name": "p1"}),
    ("POST", "/v4.3.1/libpod/manifests/list", "manifest.create", L, {"name": "list"}),
    ("POST", "/v3.4.0/libpod/manifests/create?name=list", "manifest.create", L, {}),
    ("PUT", "/v4.3.1/libpod/manifests/list", "manifest.modify", L, {"name": "list"}),
    ("POST", "/v3.4.0/libpod/manifests/list/add", "manifest.modify", L, {"name": "list"}),
    ("DELETE", "/v4.3.1/libpod/manifests/list", "manifest.delete", L, {"name": "list"}),
    ("DELETE", "/v3.4.0/libpod/manifests/list", "manifest.modify", L, {"name": "list"}),
    ("POST", "/v4.3.1/libpod/kube/play", "kube.play", L, {}),
    ("POST", "/v4.3.1/libpod/play/kube", "kube.play", L, {}),
    ("DELETE", "/v4.3.1/libpod/kube/play", "kube.down", L, {}),
    ("GET", "/v4.3.1/libpod/generate/kube?names=web", "kube.generate", L, {}),
    ("GET", "/v4.3.1/libpod/generate/web/systemd", "generate.systemd", L, {"name": "web"}),
]


@pytest.mark.parametrize(("method", "target", "operation", "api", "params"), CATALOGUE)
def test_each_endpoint_family_is_named_in_both_flavours(
    method: str, target: str, operation: str, api: Api, params: dict[str, str]
) -> None:
    route = classify(method, target)
    assert (route.operation, route.api, dict(route.params)) == (operation, api, params)
    assert route.known
    assert route.reason == ""
    assert route.section == operation.split(".")[0]


def test_the_same_endpoint_has_the_same_name_in_both_flavours() -> None:
    for docker, libpod in [
        ("/v1.41/containers/create", "/v4.3.1/libpod/containers/create"),
        ("/v1.41/containers/x/exec", "/v4.3.1/libpod/containers/x/exec"),
        ("/v1.41/exec/x/start", "/v4.3.1/libpod/exec/x/start"),
        ("/v1.41/volumes/create", "/v4.3.1/libpod/volumes/create"),
    ]:
        assert classify("POST", docker).operation == classify("POST", libpod).operation


def test_version_query_and_flavour_prefix_are_split_off() -> None:
    route = classify("POST", "/v1.41/containers/abc/attach?stream=1")
    assert (route.version, route.path, route.query) == (
        "1.41",
        "/containers/abc/attach",
        "stream=1",
    )
    route = classify("GET", "/v4.3.1/libpod/containers/abc/json?size=true")
    assert (route.api, route.version, route.path) == (Api.LIBPOD, "4.3.1", "/containers/abc/json")
    assert classify("GET", "/containers/json").version is None


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("POST", "/v1.41/containers/c/attach"),
        ("POST", "/containers/c/attach"),
        ("POST", "/v4.3.1/libpod/containers/c/attach"),
        ("GET", "/v1.41/containers/c/attach/ws"),
        ("POST", "/v1.41/exec/e/start"),
        ("POST", "/exec/e/start"),
        ("POST", "/v4.3.1/libpod/exec/e/start"),
        ("POST", "/session"),
        ("POST", "/v1.41/session"),
        ("POST", "/grpc"),
    ],
)
def test_attach_exec_start_session_and_grpc_may_hijack(method: str, target: str) -> None:
    assert classify(method, target).hijack


@pytest.mark.parametrize(
    ("method", "target"),
    [("GET", "/v1.41/containers/json"), ("GET", "/v1.41/containers/c/logs"), ("GET", "/events")],
)
def test_other_endpoints_never_hijack(method: str, target: str) -> None:
    assert not classify(method, target).hijack


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("POST", "/v1.41/containers/create", "container-create"),
        ("POST", "/v1.41/containers/c/update", "container-update"),
        ("POST", "/v1.23/containers/c/start", "container-start"),
        ("POST", "/v1.41/containers/c/exec", "exec-create"),
        ("POST", "/v1.41/volumes/create", "volume-create"),
        ("POST", "/v1.41/networks/create", "network-create"),
        ("POST", "/v1.41/services/create", "service"),
        ("POST", "/v1.41/services/s/update", "service"),
        ("POST", "/v1.41/plugins/pull?remote=p", "plugin"),
        ("POST", "/v1.41/plugins/p/upgrade?remote=p", "plugin"),
        ("POST", "/v4.3.1/libpod/containers/create", "libpod-container-create"),
        ("POST", "/v4.3.1/libpod/containers/c/exec", "libpod-exec-create"),
        ("POST", "/v4.3.1/libpod/volumes/create", "libpod-volume-create"),
        ("POST", "/v4.3.1/libpod/pods/create", "libpod-pod-create"),
        ("POST", "/v4.3.1/libpod/play/kube", "libpod-kube"),
        ("POST", "/v4.3.1/libpod/kube/play", "libpod-kube"),
        ("POST", "/v4.3.1/libpod/containers/c/start", ""),
        ("GET", "/v1.41/containers/json", ""),
    ],
)
def test_the_route_names_the_body_normaliser(method: str, target: str, body: str) -> None:
    assert classify(method, target).body == body


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("/v1.41/images/busybox/json", "busybox"),
        ("/v1.41/images/library/busybox:1.36/json", "library/busybox:1.36"),
        ("/v1.41/images/localhost:5000/a/b/c:tag/json", "localhost:5000/a/b/c:tag"),
        ("/images/quay.io/org/app@sha256:0123abcd/json", "quay.io/org/app@sha256:0123abcd"),
        ("/v1.41/images/json/json", "json"),  # an image called "json"
        ("/v1.41/images/a/json/json", "a/json"),
        # Podman's client escapes "/" in names on libpod paths (url.PathEscape).
        ("/v4.3.1/libpod/images/localhost:5000%2Fa%2Fb:tag/json", "localhost:5000/a/b:tag"),
        ("/v4.3.1/libpod/images/localhost:5000/a/b:tag/json", "localhost:5000/a/b:tag"),
        # docker-py quotes "@" in names.
        ("/v1.41/images/app%40sha256:0123abcd/json", "app@sha256:0123abcd"),
    ],
)
def test_image_names_with_slashes_and_registry_ports(target: str, name: str) -> None:
    route = classify("GET", target)
    assert (route.operation, route.param("name")) == ("image.inspect", name)


def test_a_name_variable_takes_as_many_segments_as_it_can() -> None:
    """mux's {name:.*} is a greedy Go regexp: the last "/registry/" splits."""
    route = classify("POST", "/v4.3.1/libpod/manifests/a/registry/b/registry/c")
    assert dict(route.params) == {"name": "a/registry/b", "destination": "c"}
    route = classify("POST", "/v4.3.1/libpod/manifests/list/registry/docker:%2F%2Fquay.io%2Fa")
    assert dict(route.params) == {"name": "list", "destination": "docker://quay.io/a"}


@pytest.mark.parametrize(
    ("method", "target", "operation"),
    [
        # The first route registered wins, as in gorilla/mux.
        ("DELETE", "/v1.41/containers/c/checkpoints/cp", "container.checkpoint-delete"),
        ("GET", "/v4.3.1/libpod/networks/json", "network.list"),
        ("DELETE", "/v4.3.1/libpod/images/remove", "image.delete"),
        ("POST", "/v4.3.1/libpod/images/scp/x/push", "image.push"),
        ("GET", "/v1.41/networks/", "network.list"),
        ("GET", "/v1.41/containers/json/json", "container.inspect"),
    ],
)
def test_overlapping_routes_resolve_in_registration_order(
    method: str, target: str, operation: str
) -> None:
    assert classify(method, target).operation == operation


@pytest.mark.parametrize(
    ("query", "operation"),
    [
        ("fromImage=busybox", "image.pull"),
        ("fromImage=busybox&fromSrc=-", "image.pull"),
        ("fromSrc=-", "image.import"),
        ("fromSrc=http://example.com/rootfs.tar", "image.import"),
        ("fromImage=busybox&fromImage=", "image.pull"),  # the first value counts in both
        # moby imports (fromImage is empty), Podman pulls (the key is there).
        ("fromImage=&fromSrc=-", "unknown"),
        # mux splits at ";" (Go did before 1.17): one engine could pull, another import.
        ("fromSrc=-;fromImage=busybox", "unknown"),
        ("fromImage=bad%zzescape", "unknown"),
    ],
)
def test_image_create_is_a_pull_or_an_import_by_its_query(query: str, operation: str) -> None:
    assert classify("POST", f"/v1.41/images/create?{query}").operation == operation


@pytest.mark.parametrize(
    ("target", "version"),
    [
        ("/v1.24/containers/json", "1.24"),
        ("/v1.43/containers/json", "1.43"),
        ("/v1.41.0/containers/json", "1.41.0"),
        ("/v4.3.1/containers/json", "4.3.1"),
        ("/v1/containers/json", "1"),
        ("/containers/json", None),
    ],
)
def test_version_prefixes_both_engines_read_alike(target: str, version: str | None) -> None:
    route = classify("GET", target)
    assert (route.operation, route.version) == ("container.list", version)


@pytest.mark.parametrize(
    "target",
    [
        "/v1.41-rc1/containers/json",  # Podman reads a version, moby does not
        "/v4.3.1-dev/libpod/containers/json",
        "/v1.41a/containers/json",
        "/v.1/containers/json",  # moby reads a version, Podman does not
        "/v./containers/json",
        "/v%31.41/containers/json",  # moby decodes it, Podman routes the escaped path
        "/V1.41/containers/json",  # neither
        "/v/containers/json",
        "/vx/containers/json",
        "/v1.41/v1.41/containers/json",
    ],
)
def test_version_prefixes_not_read_alike_are_refused(target: str) -> None:
    route = classify("GET", target)
    assert not route.known
    assert route.reason


def test_libpod_routes_require_a_version_prefix() -> None:
    """Podman registers libpod routes with VersionedPath only (except /libpod/_ping)."""
    assert classify("GET", "/libpod/containers/json").operation == "unknown"
    assert classify("GET", "/v1.41/libpod/containers/json").operation == "container.list"
    assert classify("GET", "/libpod/_ping").operation == "system.ping"


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/v1.41/containers/a%2Fb/json", "percent-encoded '/'"),
        ("/v1.41/images/localhost:5000%2Fa/json", "percent-encoded '/'"),
        ("/v1.41/exec%2Fx/start", "percent-encoded '/'"),
        ("/v1.41/containers/%2E%2E/json", "percent-encoded '.'"),
        ("/v1.41/containers/%2e/json", "percent-encoded '.'"),
        ("/v1.41/containers/a%00/json", "percent-encoded '\\x00'"),
        ("/v1.41/containers/a%0A/json", "percent-encoded '\\n'"),
        ("/v1.41/containers/a%25/json", "percent-encoded '%'"),
        ("/v1.41/containers/a%3F/json", "percent-encoded '?'"),
        ("/v1.41/containers/a%5C/json", "percent-encoded '\\\\'"),
        ("/v1.41/containers/a%C3%A9/json", "percent-encoded"),
        ("/v1.41/containers/a%2/json", "malformed percent-encoding"),
        ("/v1.41/containers/a%zz/json", "malformed percent-encoding"),
        ("/v1.41/containers/a\\b/json", "the path holds '\\\\'"),
        ("/v1.41/containers/a#b/json", "the path holds '#'"),
        ('/v1.41/containers/a"b/json', "the path holds '\"'"),
        ("/v1.41/containers/caf\xe9/json", "the path holds"),
        ("/v1.41/containers/a{b}/json", "the path holds '{'"),
        ("/v4.3.1/libpod/images/a%2F..%2F..%2Fcontainers/json", "'..' segment"),
        ("/v4.3.1/libpod/volumes/%2E%2E/json", "percent-encoded '.'"),
        ("containers/json", "not a path"),
        ("", "not a path"),
    ],
)
def test_ambiguous_spellings_are_refused_with_a_reason(target: str, reason: str) -> None:
    route = classify("GET", target)
    assert route.operation == "unknown"
    assert not route.known
    assert reason in route.reason


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/v1.41/containers/json/"),  # a trailing slash is not cleaned away
        ("POST", "/v1.41/exec/x/start/"),
        ("GET", "/v1.41/containers/nope"),
        ("PATCH", "/v1.41/containers/c/json"),
        ("get", "/v1.41/containers/json"),  # methods are case-sensitive
        ("HEAD", "/v1.41/containers/json"),  # HEAD only where registered
        ("GET", "/"),
        ("GET", "/v1.41"),
        ("GET", "/v1.41/"),
        ("POST", "/v1.41/containers/c/update/"),
        ("POST", "/debug/pprof/profile"),
        ("GET", "/monitor"),  # Podman answers "not supported"
        ("GET", "/v4.3.1/libpod/%63ontainers/json"),  # Podman does not decode fixed segments
    ],
)
def test_unknown_endpoints_are_not_recognised(method: str, target: str) -> None:
    route = classify(method, target)
    assert route == Route(
        "unknown",
        "unknown",
        route.api,
        route.path,
        route.query,
        route.version,
        False,
        reason="endpoint not recognised",
    )


@pytest.mark.parametrize(
    "target",
    [
        "/v1.41/exec/x/start",
        "//v1.41//exec//x//start",
        "/v1.41/./exec/x/start",
        "/./v1.41/exec/./x/start",
        "/v1.41/containers/../exec/x/start",
        "/../v1.41/exec/x/start",
        "/v1.41/%65xec/x/start",  # moby decodes before routing (Podman 404s)
        "/v1.41/%65%78%65%63/x/start",
        "/v1.41/exec/%78/start",  # in a parameter both engines decode it
    ],
)
def test_spellings_the_engine_cleans_reach_the_same_endpoint(target: str) -> None:
    route = classify("POST", target)
    assert (route.operation, route.param("id"), route.path) == ("exec.start", "x", "/exec/x/start")


def test_a_trailing_slash_routes_as_the_engines_route_it() -> None:
    """mux keeps the slash; moby's {name:.*} takes it into the name."""
    route = classify("DELETE", "/v1.41/containers/web/")
    assert (route.operation, route.param("id")) == ("container.delete", "web/")


# -- the catalogue itself ---------------------------------------------------------

_SAMPLE = {"{id}": "c0ffee", "{name}": "c0ffee", "{checkpoint}": "cp1"}


def _sample_targets(endpoint: Endpoint) -> list[str]:
    """Concrete targets for one catalogue row, with every prefix it is registered with."""
    path = re.sub(r"\{(\w+):\.[*+]\}", "registry.example:5000/team/app:1.0", endpoint.template)
    path = re.sub(r"\{\w+\}", lambda m: _SAMPLE.get(m.group(0), "c0ffee"), path)
    if endpoint.when:
        key = endpoint.when.lstrip("!")
        path += (
            "?fromSrc=-"
            if endpoint.when.startswith("!")
            else f"?{key}=" + ("busybox" if key == "fromImage" else "-")
        )
    version = "4.3.1" if endpoint.api is Api.LIBPOD else "1.41"
    return {
        Prefix.OPTIONAL: [path, f"/v{version}{path}"],
        Prefix.REQUIRED: [f"/v{version}{path}"],
        Prefix.ABSENT: [path],
        Prefix.V3: [f"/v3.4.0{path}"],
        Prefix.V4: [f"/v4.3.1{path}"],
    }[endpoint.prefix]


@pytest.mark.parametrize(
    "endpoint", ENDPOINTS, ids=[f"{e.engine.value} {e.method} {e.template}" for e in ENDPOINTS]
)
def test_every_catalogue_route_is_reachable_and_both_engines_agree(endpoint: Endpoint) -> None:
    for target in _sample_targets(endpoint):
        route = classify(endpoint.method, target)
        assert (route.operation, route.body, route.hijack, route.api) == (
            endpoint.operation,
            endpoint.body,
            endpoint.hijack,
            endpoint.api,
        ), target


def test_operation_names_are_dotted_and_in_a_documented_section() -> None:
    for endpoint in ENDPOINTS:
        assert re.fullmatch(r"[a-z]+\.[a-z]+(-[a-z]+)*", endpoint.operation), endpoint
        assert endpoint.section in SECTIONS, endpoint
    assert {e.section for e in ENDPOINTS} == set(SECTIONS)


def test_body_normalisers_are_the_known_ones() -> None:
    """The body kinds sockproxy.normalize dispatches on, and no others."""
    from sockproxy.normalize import BODY_KINDS

    assert {e.body for e in ENDPOINTS} == BODY_KINDS


def test_the_catalogue_covers_both_engines() -> None:
    """Counts of moby (API 1.43) and Podman 4.3 registrations; a change here is deliberate."""
    counts = {
        (engine, api): sum(1 for e in ENDPOINTS if (e.engine, e.api) == (engine, api))
        for engine in Engine
        for api in Api
    }
    assert counts == {
        (Engine.DOCKER, Api.DOCKER): 123,
        (Engine.DOCKER, Api.LIBPOD): 0,
        (Engine.PODMAN, Api.DOCKER): 67,
        (Engine.PODMAN, Api.LIBPOD): 118,
    }


def test_docs_endpoints_md_is_generated_from_the_catalogue() -> None:
    spec = importlib.util.spec_from_file_location(
        "list_endpoints", ROOT / "scripts/list_endpoints.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs/endpoints.md").read_text(encoding="utf-8") == module.render(), (
        "run: .venv/bin/python scripts/list_endpoints.py > docs/endpoints.md"
    )


def test_classify_is_memoised() -> None:
    assert classify("GET", "/v1.41/containers/json") is classify("GET", "/v1.41/containers/json")


# -- properties -------------------------------------------------------------------

_METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]) | st.text(
    max_size=8
)
_PATHS = st.text(alphabet="/.%2Fe5vlibpod0123456789:@?&=;\\#~-", max_size=40)


@given(_METHODS, st.text(max_size=60) | _PATHS)
def test_classify_never_raises_and_unknown_is_never_known(method: str, target: str) -> None:
    route = classify(method, target)
    assert route.known == (route.operation != "unknown")
    if route.known:
        assert route.reason == ""
        assert route.section in SECTIONS
    else:
        assert route.reason
        assert (route.section, route.hijack, route.params, route.body) == ("unknown", False, (), "")


@given(st.lists(st.sampled_from(["", ".", "..", "v1.41", "libpod", "containers", "c", "json"])))
def test_cleaning_a_target_does_not_change_its_endpoint(segments: list[str]) -> None:
    target = "/" + "/".join(segments)
    cleaned = classify("GET", clean_path(target))
    route = classify("GET", target)
    assert (route.operation, route.params) == (cleaned.operation, cleaned.params)


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("/", "/"),
        ("", "/"),
        ("//a//b/", "/a/b/"),  # mux keeps the trailing slash
        ("/a/./b/../c", "/a/c"),
        ("/../a", "/a"),
        ("///", "/"),
        ("/a/..", "/"),
        ("/a/../", "/"),
        ("a/b", "/a/b"),
    ],
)
def test_clean_path_matches_gorilla_mux(path: str, cleaned: str) -> None:
    assert clean_path(path) == cleaned


@given(st.text(alphabet="/.ab%", max_size=30))
def test_clean_path_is_idempotent_and_absolute(suffix: str) -> None:
    once = clean_path("/" + suffix)
    assert once.startswith("/")
    assert clean_path(once) == once
    assert "//" not in once
    assert once.endswith("/") == (suffix.endswith("/") or once == "/")
