"""Ownership isolation: labels on creates, label filters on listings, and the
fresh lookup that answers 404 for what a tenant doesn't own."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest

from sockproxy import fence
from sockproxy.fence import OWNER_LABEL, NotFound, Unavailable
from sockproxy.jsonread import AmbiguousBody, InvalidBody
from sockproxy.lookup import LookupFailed
from sockproxy.model import Request
from sockproxy.normalize import normalize
from sockproxy.routes import classify

ME, THEM = "uid:1001", "uid:1002"
FULL = "f" * 64


def _filters(query: str) -> Any:
    values = [v for k, v in parse_qsl(query) if k == "filters"]
    assert len(values) == 1
    return json.loads(values[0])


@pytest.mark.parametrize(
    ("query", "expected_filters", "kept"),
    [
        ("", {"label": [f"{OWNER_LABEL}={ME}"]}, []),
        ("all=1", {"label": [f"{OWNER_LABEL}={ME}"]}, [("all", "1")]),
        (
            "filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D",  # {"label":["a=b"]}
            {"label": ["a=b", f"{OWNER_LABEL}={ME}"]},
            [],
        ),
        (
            "filters=%7B%22status%22%3A%7B%22running%22%3Atrue%7D%7D",  # map-of-bool form
            {"status": ["running"], "label": [f"{OWNER_LABEL}={ME}"]},
            [],
        ),
        (
            # Go reads the first value only; the second must not survive either.
            "filters=%7B%7D&filters=%7B%22label%22%3A%5B%22x%22%5D%7D&all=1",
            {"label": [f"{OWNER_LABEL}={ME}"]},
            [("all", "1")],
        ),
        (
            # Someone else's owner label ANDs with ours: nothing matches both.
            f"filters=%7B%22label%22%3A%5B%22{OWNER_LABEL}%3D{THEM}%22%5D%7D",
            {"label": [f"{OWNER_LABEL}={THEM}", f"{OWNER_LABEL}={ME}"]},
            [],
        ),
    ],
)
def test_listings_get_the_owner_label_filter(
    query: str, expected_filters: dict[str, list[str]], kept: list[tuple[str, str]]
) -> None:
    result = fence._filtered_query(query, ME)
    assert _filters(result) == expected_filters
    assert [(k, v) for k, v in parse_qsl(result) if k != "filters"] == kept


@pytest.mark.parametrize("bad", ["filters=%7B", "filters=%5B%5D", "filters=%7B%22a%22%3A1%7D"])
def test_unreadable_filters_are_refused(bad: str) -> None:
    with pytest.raises(InvalidBody):
        fence._filtered_query(bad, ME)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{}", {"Labels": {OWNER_LABEL: ME}}),
        (b'{"Labels": {"a": "b"}}', {"Labels": {"a": "b", OWNER_LABEL: ME}}),
        (b'{"labels": {"a": "b"}}', {"labels": {"a": "b", OWNER_LABEL: ME}}),  # libpod spelling
        (
            b'{"Labels": {"%s": "%s"}}' % (OWNER_LABEL.encode(), THEM.encode()),
            {"Labels": {OWNER_LABEL: ME}},
        ),
        (b'{"Image": "x", "Labels": null}', {"Image": "x", "Labels": {OWNER_LABEL: ME}}),
    ],
)
def test_creates_are_labelled_with_the_owner_whatever_the_client_sent(
    body: bytes, expected: dict[str, Any]
) -> None:
    assert json.loads(fence._labelled(body, ME)) == expected


def test_labels_that_are_not_an_object_are_refused() -> None:
    with pytest.raises(InvalidBody):
        fence._labelled(b'{"Labels": ["a"]}', ME)


class FakeEngine:
    """Answers lookups from a table of paths; records what was created."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects
        self.created: list[tuple[str, object]] = []

    async def get_json(self, path: str) -> Any | None:
        return self.objects.get(path.removeprefix("/v1.41"))

    async def post_json(self, path: str, body: object) -> Any | None:
        self.created.append((path, body))
        assert isinstance(body, dict)
        self.objects[f"/volumes/{body['Name']}"] = {"Name": body["Name"], "Labels": body["Labels"]}
        return {"Name": body["Name"]}


def _container(owner: str | None) -> dict[str, Any]:
    labels = {OWNER_LABEL: owner} if owner else {}
    return {"Id": FULL, "Config": {"Labels": labels}}


ENGINE = {
    "/containers/mine/json": _container(ME),
    "/containers/theirs/json": _container(THEM),
    "/containers/unlabelled/json": _container(None),
    "/exec/e1/json": {"ContainerID": "mine"},
    "/exec/e2/json": {"ContainerID": "theirs"},
    "/volumes/myvol": {"Name": "myvol", "Labels": {OWNER_LABEL: ME}},
    "/volumes/theirvol": {"Name": "theirvol", "Labels": {OWNER_LABEL: THEM}},
    "/networks/mynet": {"Id": "n" * 64, "Name": "mynet", "Labels": {OWNER_LABEL: ME}},
    "/networks/theirnet": {"Id": "t" * 64, "Name": "theirnet", "Labels": {OWNER_LABEL: THEM}},
    "/networks/bridge": {"Id": "b" * 64, "Name": "bridge", "Labels": {}},
}


async def _fence(method: str, target: str, body: Any = None) -> fence.Fenced:
    return await _fence_with({}, method, target, body)


@pytest.mark.parametrize(
    ("method", "target", "new_target"),
    [
        ("GET", "/v1.41/containers/mine/json", f"/v1.41/containers/{FULL}/json"),
        ("POST", "/v1.41/containers/mine/stop?t=0", f"/v1.41/containers/{FULL}/stop?t=0"),
        ("DELETE", "/containers/mine?force=1", f"/containers/{FULL}?force=1"),
        ("POST", "/v1.41/containers/mine/exec", f"/v1.41/containers/{FULL}/exec"),
        ("POST", "/v1.41/commit?container=mine&repo=x", f"/v1.41/commit?repo=x&container={FULL}"),
        ("GET", "/v1.41/networks/mynet", f"/v1.41/networks/{'n' * 64}"),
        ("GET", "/v1.41/networks/bridge", f"/v1.41/networks/{'b' * 64}"),  # shared to use
    ],
)
async def test_operations_on_own_objects_go_to_the_full_id(
    method: str, target: str, new_target: str
) -> None:
    fenced = await _fence(method, target, {} if "exec" in target else None)
    assert fenced.target == new_target


@pytest.mark.parametrize(
    ("method", "target", "message"),
    [
        ("GET", "/v1.41/containers/theirs/json", "No such container: theirs"),
        ("GET", "/v1.41/containers/unlabelled/logs", "No such container: unlabelled"),
        ("GET", "/v1.41/containers/missing/json", "No such container: missing"),
        ("POST", "/v1.41/containers/theirs/attach?stream=1", "No such container: theirs"),
        ("PUT", "/v1.41/containers/theirs/archive?path=/", "No such container: theirs"),
        ("POST", "/v1.41/containers/theirs/exec", "No such container: theirs"),
        ("POST", "/v1.41/exec/e2/start", "No such exec instance: e2"),
        ("GET", "/v1.41/exec/nope/json", "No such exec instance: nope"),
        ("DELETE", "/v1.41/volumes/theirvol", "get theirvol: no such volume"),
        ("DELETE", "/v1.41/networks/theirnet", "network theirnet not found"),
        ("DELETE", "/v1.41/networks/bridge", "network bridge not found"),  # nobody deletes it
        ("POST", "/v1.41/commit?container=theirs", "No such container: theirs"),
    ],
)
async def test_others_objects_answer_as_missing_ones_do(
    method: str, target: str, message: str
) -> None:
    body: dict[str, Any] | None = {} if target.endswith("/exec") else None
    with pytest.raises(NotFound) as caught:
        await _fence(method, target, body)
    assert caught.value.message == message
    assert caught.value.status == 404


async def test_own_execs_and_volumes_pass_unchanged() -> None:
    assert await _fence("POST", "/v1.41/exec/e1/start", None) == fence.Fenced()
    assert await _fence("GET", "/v1.41/volumes/myvol") == fence.Fenced()


async def test_connecting_someone_elses_container_to_my_network_is_refused() -> None:
    with pytest.raises(NotFound, match="No such container: theirs"):
        await _fence("POST", "/v1.41/networks/mynet/connect", {"Container": "theirs"})
    fenced = await _fence("POST", "/v1.41/networks/mynet/connect", {"Container": "mine"})
    assert fenced.target == f"/v1.41/networks/{'n' * 64}/connect"


@pytest.mark.parametrize(
    "body",
    [
        {"Image": "x", "HostConfig": {"VolumesFrom": ["theirs:ro"]}},
        {"Image": "x", "HostConfig": {"NetworkMode": "container:theirs"}},
        {"Image": "x", "HostConfig": {"PidMode": "container:theirs"}},
        {"Image": "x", "HostConfig": {"Links": ["/theirs:db"]}},
        {"Image": "x", "HostConfig": {"NetworkMode": "theirnet"}},
        {"Image": "x", "NetworkingConfig": {"EndpointsConfig": {"theirnet": {}}}},
        {"Image": "x", "HostConfig": {"Binds": ["theirvol:/data"]}},
        {
            "Image": "x",
            "HostConfig": {"Mounts": [{"Type": "volume", "Source": "theirvol", "Target": "/d"}]},
        },
    ],
)
async def test_a_create_may_refer_only_to_own_objects(body: dict[str, Any]) -> None:
    with pytest.raises(Unavailable) as caught:
        await _fence("POST", "/v1.41/containers/create", body)
    assert caught.value.status == 403  # not 404: the CLI would take it for a missing image
    assert "(rule isolation)" in caught.value.message


async def test_a_create_referring_to_own_objects_is_labelled() -> None:
    body = {
        "Image": "x",
        "Labels": {OWNER_LABEL: THEM},
        "HostConfig": {"VolumesFrom": ["mine"], "Binds": ["myvol:/d"], "NetworkMode": "mynet"},
    }
    fenced = await _fence("POST", "/v1.41/containers/create", body)
    assert fenced.body is not None
    assert json.loads(fenced.body)["Labels"] == {OWNER_LABEL: ME}


async def test_a_missing_named_volume_is_created_for_its_owner_first() -> None:
    route = classify("POST", "/v1.41/containers/create")
    payload = json.dumps({"Image": "x", "HostConfig": {"Binds": ["fresh:/d"]}}).encode()
    request = normalize(route.operation, route.section, route.body, route.query, payload)
    engine = FakeEngine(dict(ENGINE))
    await fence.fence(engine, ME, route, request, payload)  # type: ignore[arg-type]
    assert engine.created == [
        ("/v1.41/volumes/create", {"Name": "fresh", "Labels": {OWNER_LABEL: ME}})
    ]


async def test_someone_elses_volume_name_is_not_handed_out_by_create() -> None:
    with pytest.raises(Unavailable, match="the volume name theirvol is taken"):
        await _fence("POST", "/v1.41/volumes/create", {"Name": "theirvol"})


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/v1.41/system/df"),
        ("POST", "/v1.41/containers/mine/checkpoints"),
        ("GET", "/v4.0.0/libpod/containers/mine/json"),  # the libpod API isn't fenced
        ("POST", "/v1.41/swarm/init"),
    ],
)
async def test_what_isolation_cannot_fence_is_refused(method: str, target: str) -> None:
    with pytest.raises(Unavailable, match=r"rule isolation"):
        await _fence(method, target, {} if method == "POST" else None)


def _quoted(filters: dict[str, Any]) -> str:
    return "filters=" + quote(json.dumps(filters), safe="")


@pytest.mark.parametrize(
    ("query", "expected_filters", "kept"),
    [
        # Only true entries of the map-of-bool form filter.
        (
            _quoted({"label": {"a=b": True, "c=d": False}}),
            {"label": ["a=b", f"{OWNER_LABEL}={ME}"]},
            [],
        ),
        ("filters=", {"label": [f"{OWNER_LABEL}={ME}"]}, []),  # given but empty
        ("filters", {"label": [f"{OWNER_LABEL}={ME}"]}, []),
        # Other parameters keep their order, wherever filters was.
        (
            "all=1&" + _quoted({"status": ["exited"]}) + "&limit=3&size=",
            {"status": ["exited"], "label": [f"{OWNER_LABEL}={ME}"]},
            [("all", "1"), ("limit", "3"), ("size", "")],
        ),
        # Every filters parameter goes, however it is spelled in the query.
        (
            "fil%74ers=%7B%7D&filters=%7B%22label%22%3A%5B%22x%22%5D%7D",
            {"label": [f"{OWNER_LABEL}={ME}"]},
            [],
        ),
    ],
)
def test_more_listing_filters(
    query: str, expected_filters: dict[str, list[str]], kept: list[tuple[str, str]]
) -> None:
    result = fence._filtered_query(query, ME)
    assert _filters(result) == expected_filters
    assert [(k, v) for k, v in parse_qsl(result, keep_blank_values=True) if k != "filters"] == kept


@pytest.mark.parametrize(
    ("filters", "refused"),
    [
        ({"label": ["com.example=x"]}, True),
        ({"label": {"com.example=x": True}}, True),
        ({"label": []}, False),
        ({"label": {"x": False}}, False),
        ({"type": ["container"], "event": ["start"]}, False),
    ],
)
async def test_events_take_no_label_filters_of_the_clients(
    filters: dict[str, Any], refused: bool
) -> None:
    """Podman ORs the label filters of events: one more label (the owner's)
    would widen what is shown to other tenants' events, not narrow it."""
    target = "/v1.41/events?" + _quoted(filters)
    if refused:
        with pytest.raises(Unavailable, match=r"label filters on events .* \(rule isolation\)"):
            await _fence("GET", target)
    else:
        fenced = await _fence("GET", target)
        assert fenced.target is not None
        assert _filters(fenced.target.split("?", 1)[1])["label"][-1] == f"{OWNER_LABEL}={ME}"


async def test_on_docker_events_keep_the_clients_label_filters() -> None:
    """Docker ANDs them (daemon/events/filter.go): docker compose watches by label."""
    route = classify("GET", "/v1.41/events?" + _quoted({"label": ["com.docker.compose.project=x"]}))
    engine: Any = FakeEngine(dict(ENGINE))
    for kind in ("podman", ""):  # Podman, or an engine that didn't say: refused
        with pytest.raises(Unavailable):
            await fence.fence(
                engine, ME, route, Request(route.operation, route.section), None, kind
            )
    fenced = await fence.fence(
        engine, ME, route, Request(route.operation, route.section), None, "docker"
    )
    assert fenced.target is not None
    assert _filters(fenced.target.split("?", 1)[1])["label"] == [
        "com.docker.compose.project=x",
        f"{OWNER_LABEL}={ME}",
    ]


async def test_listings_keep_their_label_filters_which_the_engines_and() -> None:
    fenced = await _fence("GET", "/v1.41/containers/json?" + _quoted({"label": ["a=b"]}))
    assert fenced.target is not None
    assert fenced.target.startswith("/v1.41/containers/json?")
    assert _filters(fenced.target.split("?", 1)[1]) == {"label": ["a=b", f"{OWNER_LABEL}={ME}"]}


@pytest.mark.parametrize(
    ("target", "name", "full", "expected"),
    [
        ("/v1.41/containers/web/json", "web", FULL, f"/containers/{FULL}/json"),
        ("/containers/web", "web", FULL, f"/containers/{FULL}"),
        ("/v1.41/containers/a/b/logs", "a/b", FULL, f"/containers/{FULL}/logs"),
        ("/v1.41/networks/net", "net", "n1", "/networks/n1"),
    ],
)
def test_with_id_names_the_object_by_its_full_id(
    target: str, name: str, full: str, expected: str
) -> None:
    method = "DELETE" if target == "/containers/web" else "GET"
    assert fence._with_id(classify(method, target), name, full) == expected


def test_with_id_refuses_a_path_that_does_not_hold_the_name() -> None:
    with pytest.raises(LookupFailed):
        fence._with_id(classify("GET", "/v1.41/containers/webapp/json"), "web", FULL)


@pytest.mark.parametrize(
    ("method", "target", "applies"),
    [
        ("GET", "/_ping", False),
        ("GET", "/v1.41/images/json", False),  # images are shared
        ("POST", "/v1.41/images/create?fromImage=x", False),
        ("POST", "/v1.41/build", False),
        ("POST", "/v1.41/commit?container=x", True),  # but not the container committed
        ("GET", "/v1.41/containers/json", True),
        ("GET", "/v1.41/events", True),
        ("POST", "/v1.41/build?networkmode=host", False),
        ("POST", "/v1.41/build?networkmode=container:theirs", True),
        ("POST", "/v1.41/build?t=x&NetworkMode=Container:theirs", True),
        ("POST", "/v1.41/images/x/tag?repo=y", False),
        ("GET", "/v1.41/version", False),
        ("POST", "/v1.41/volumes/create", True),
        ("GET", "/v1.41/system/df", True),
        ("POST", "/v1.41/swarm/init", True),
    ],
)
def test_what_isolation_looks_at(method: str, target: str, applies: bool) -> None:
    assert fence.applies(classify(method, target)) is applies


async def test_a_build_may_not_join_a_containers_network() -> None:
    """Docker's classic builder runs RUN steps in the network mode given."""
    with pytest.raises(Unavailable, match=r"network namespace .* \(rule isolation\)"):
        await _fence("POST", "/v1.41/build?networkmode=container:mine")


@pytest.mark.parametrize(
    "query",
    [
        "container=mine&Container=theirs",  # Podman reads both spellings, either may win
        "container=mine&container=theirs",  # Docker reads the first, Podman the last
    ],
)
async def test_a_commit_naming_its_container_two_ways_is_refused(query: str) -> None:
    with pytest.raises(AmbiguousBody):
        await _fence("POST", f"/v1.41/commit?{query}&repo=x")


async def test_a_commit_names_the_full_id_once() -> None:
    fenced = await _fence("POST", "/v1.41/commit?container=mine&repo=x&container=mine")
    assert fenced.target == f"/v1.41/commit?repo=x&container={FULL}"


@pytest.mark.parametrize(
    "body",
    [
        {"VolumesFrom": ["theirs"]},
        {"NetworkMode": "container:theirs"},
        {"IpcMode": "container:theirs"},
        {"Links": ["theirs:db"]},
        {"Binds": ["theirvol:/d"]},
        {"NetworkMode": "theirnet"},
    ],
)
async def test_a_legacy_start_body_may_refer_only_to_own_objects(body: dict[str, Any]) -> None:
    """Below API 1.24 a start body is a HostConfig, and Docker applies it."""
    with pytest.raises(Unavailable, match=r"\(rule isolation\)"):
        await _fence("POST", "/v1.23/containers/mine/start", body)


async def test_a_legacy_start_of_own_objects_goes_to_the_full_id() -> None:
    body = {"VolumesFrom": ["mine"], "Binds": ["myvol:/d"], "NetworkMode": "mynet"}
    fenced = await _fence("POST", "/v1.23/containers/mine/start", body)
    assert fenced.target == f"/v1.23/containers/{FULL}/start"
    assert fenced.body is None  # forwarded as sent


# Networks named like the engines' own: "podman" is an ordinary name on
# Docker, "bridge" one on Podman; a tenant may have made them.
NAMESAKES = {
    "/networks/podman": {"Id": "p" * 64, "Name": "podman", "Labels": {OWNER_LABEL: THEM}},
    "/networks/host": {"Id": "h" * 64, "Name": "host", "Labels": {OWNER_LABEL: ME}},
}


async def _fence_with(
    objects: dict[str, Any], method: str, target: str, body: Any = None
) -> fence.Fenced:
    route = classify(method, target)
    payload = json.dumps(body).encode() if body is not None else None
    request = (
        normalize(route.operation, route.section, route.body, route.query, payload)
        if route.body
        else Request(route.operation, route.section)
    )
    engine: Any = FakeEngine({**ENGINE, **objects})
    return await fence.fence(engine, ME, route, request, payload)


@pytest.mark.parametrize(
    "body",
    [
        {"Image": "x", "HostConfig": {"NetworkMode": "podman"}},
        {"Image": "x", "NetworkingConfig": {"EndpointsConfig": {"podman": {}}}},
    ],
)
async def test_someone_elses_network_named_like_a_predefined_one_is_not_shared(
    body: dict[str, Any],
) -> None:
    with pytest.raises(Unavailable, match=r"network podman not found \(rule isolation\)"):
        await _fence_with(NAMESAKES, "POST", "/v1.41/containers/create", body)
    with pytest.raises(NotFound, match="network podman not found"):
        await _fence_with(NAMESAKES, "GET", "/v1.41/networks/podman")


@pytest.mark.parametrize(
    "mode",
    ["default", "bridge", "host", "none", "podman"],  # "default" and "podman": no such network
)
async def test_predefined_networks_and_mode_words_stay_usable(mode: str) -> None:
    body = {"Image": "x", "HostConfig": {"NetworkMode": mode}}
    fenced = await _fence_with(
        {"/networks/host": {"Id": "h" * 64, "Name": "host", "Labels": {}}},
        "POST",
        "/v1.41/containers/create",
        body,
    )
    assert fenced.body is not None
    assert json.loads(fenced.body)["Labels"] == {OWNER_LABEL: ME}


async def test_own_network_named_like_a_predefined_one_is_usable() -> None:
    fenced = await _fence_with(NAMESAKES, "GET", "/v1.41/networks/host")
    assert fenced.target == f"/v1.41/networks/{'h' * 64}"


async def test_a_missing_named_volume_is_created_with_the_mounts_driver_and_options() -> None:
    route = classify("POST", "/v1.41/containers/create")
    mount = {
        "Type": "volume",
        "Source": "cache",
        "Target": "/c",
        "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "tmpfs"}}},
    }
    payload = json.dumps({"Image": "x", "HostConfig": {"Mounts": [mount]}}).encode()
    request = normalize(route.operation, route.section, route.body, route.query, payload)
    engine = FakeEngine(dict(ENGINE))
    await fence.fence(engine, ME, route, request, payload)  # type: ignore[arg-type]
    assert engine.created == [
        (
            "/v1.41/volumes/create",
            {
                "Name": "cache",
                "Labels": {OWNER_LABEL: ME},
                "Driver": "local",
                "DriverOpts": {"type": "tmpfs"},
            },
        )
    ]


async def test_a_volume_the_engine_would_not_create_is_a_lookup_failure() -> None:
    class Refusing(FakeEngine):
        async def post_json(self, path: str, body: object) -> Any | None:
            return None

    route = classify("POST", "/v1.41/containers/create")
    payload = json.dumps({"Image": "x", "HostConfig": {"Binds": ["fresh:/d"]}}).encode()
    request = normalize(route.operation, route.section, route.body, route.query, payload)
    with pytest.raises(LookupFailed, match="could not create the volume fresh"):
        await fence.fence(Refusing(dict(ENGINE)), ME, route, request, payload)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Image": "x", "HostConfig": {"VolumesFrom": ["gone"]}}, "No such container: gone"),
        ({"Image": "x", "HostConfig": {"NetworkMode": "gone"}}, "network gone not found"),
        (
            {"Image": "x", "HostConfig": {"NetworkMode": "container:unlabelled"}},
            "No such container: unlabelled",  # made outside sockproxy: nobody's
        ),
    ],
)
async def test_a_create_referring_to_missing_objects_reads_as_not_owned(
    body: dict[str, Any], message: str
) -> None:
    with pytest.raises(Unavailable) as caught:
        await _fence("POST", "/v1.41/containers/create", body)
    assert caught.value.message == f"sockproxy: {message} (rule isolation)"


async def test_an_own_volume_name_may_be_created_again() -> None:
    fenced = await _fence("POST", "/v1.41/volumes/create", {"Name": "myvol"})
    assert fenced.body is not None
    assert json.loads(fenced.body) == {"Name": "myvol", "Labels": {OWNER_LABEL: ME}}


async def test_networks_are_created_labelled() -> None:
    fenced = await _fence("POST", "/v1.41/networks/create", {"Name": "n", "Labels": {"a": "b"}})
    assert fenced.body is not None
    assert json.loads(fenced.body)["Labels"] == {"a": "b", OWNER_LABEL: ME}


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("POST", "/v1.41/system/prune"),
        ("POST", "/v1.41/build/prune"),
        ("GET", "/v1.41/plugins"),
        ("OPTIONS", "/v1.41/containers/json"),
        ("GET", "/v4.0.0/libpod/containers/json"),
        ("POST", "/v4.0.0/libpod/commit?container=mine"),
        ("POST", "/v4.0.0/libpod/volumes/create"),
    ],
)
async def test_more_of_what_isolation_cannot_fence_is_refused(method: str, target: str) -> None:
    with pytest.raises(Unavailable) as caught:
        await _fence(method, target, {} if method == "POST" and "create" in target else None)
    assert caught.value.status == 403
    assert caught.value.message.endswith("(rule isolation)")
