"""Ownership isolation: each client sees and touches only what it created.

Runs after a policy with ``isolation: true`` allowed a request, before it is
forwarded. Containers, volumes and networks created through sockproxy get
the label ``sockproxy.owner=<owner>`` (whatever the client sent for that
label is overwritten); execs belong to their container's owner. Then:

* listings, prunes and ``events`` carry a label filter for the owner, added
  to the client's own filters (the engines AND label filters; Podman ORs
  those of ``events``, so there the client may give none);
* an operation on one object (inspect, logs, exec, attach, archive, stop,
  rm, connect ...) first asks the engine for the object *now* and answers
  404, exactly as for a missing object, unless the owner label matches; the
  request is then forwarded naming the object's full ID, so that a rename
  or a removal between the check and the engine's lookup can't redirect it
  to someone else's object;
* a create (and a legacy start body, a HostConfig) may only refer to the
  owner's objects (``VolumesFrom``, joining a container's namespaces, links,
  networks, named volumes); a named volume that does not exist yet is
  created, labelled, before the container;
* images are shared (a commit reads an owned container; a build may not
  join a container's network); any other operation is refused under
  isolation (403, rule ``isolation``), and so is the libpod API beyond the
  shared sections.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from sockproxy import jsonread
from sockproxy.errors import ProxyError
from sockproxy.jsonread import JsonObject, JsonValue
from sockproxy.lookup import EngineClient, LookupFailed
from sockproxy.model import Mount, NamespaceMode, Request
from sockproxy.normalize.query import Query
from sockproxy.routes import Api, Route

OWNER_LABEL = "sockproxy.owner"
RULE = "isolation"
# Networks every engine creates itself: usable by everyone, owned by no one.
PREDEFINED_NETWORKS = frozenset({"bridge", "host", "none", "default", "podman"})
_API = "/v1.41"  # lookups use an API version both engines serve


class NotFound(ProxyError):
    """The object is missing or someone else's: the same answer for both."""

    status = 404
    close = False


class Unavailable(ProxyError):
    status = 403
    close = False


@dataclass(frozen=True, slots=True)
class Fenced:
    """What to forward instead: a new request target and/or body (None: as is)."""

    target: str | None = None
    body: bytes | None = None
    object_id: str = ""  # the full ID the target now names


# Operations that touch nothing a tenant owns.
SHARED_SECTIONS = frozenset({"image", "distribution"})
SHARED = frozenset(
    {
        "system.ping",
        "system.version",
        "system.info",
        "system.auth",
        "build.image",
        "build.cancel",
    }
)
FILTERED = frozenset(
    {
        "container.list",
        "container.prune",
        "volume.list",
        "volume.prune",
        "network.list",
        "network.prune",
        "system.events",
    }
)
_NOT_FOUND = {
    "container": "No such container: {}",
    "exec": "No such exec instance: {}",
    "volume": "get {}: no such volume",
    "network": "network {} not found",
}


def applies(route: Route) -> bool:
    """Does isolation have anything to do for this request?"""
    if route.operation == "image.commit":  # an image from a container's files
        return True
    if route.operation == "build.image":
        # Docker's classic builder runs RUN steps in the networkmode given:
        # container:NAME joins that container's network namespace.
        return _joins_container(route.query)
    return route.operation not in SHARED and route.section not in SHARED_SECTIONS


def _joins_container(query: str) -> bool:
    return any(
        key.lower() == "networkmode" and value.lower().startswith("container:")
        for key, value in parse_qsl(query, keep_blank_values=True)
    )


async def fence(
    engine: EngineClient,
    owner: str,
    route: Route,
    request: Request,
    body: bytes | None,
    engine_kind: str = "",
) -> Fenced:
    """Check a request against ``owner``'s objects; what to forward, or raise
    ``NotFound`` / ``Unavailable``."""
    operation = route.operation
    if route.api is Api.LIBPOD:
        raise Unavailable(
            f"sockproxy: {operation} through the libpod API is not available to isolated "
            f"clients; use the Docker API (rule {RULE})"
        )
    objects = _Objects(engine, owner)
    if operation == "image.commit":
        # Podman reads "Container" as "container" too, and a repeated one's
        # last value: Query refuses both doubts before the lookup.
        committed = Query(route.query).get("container") or ""
        full = await objects.container(committed)
        query = _replaced(route.query, "container", full)
        return Fenced(target=_target(route, route.path, query), object_id=full)
    if operation == "build.image":
        raise Unavailable(
            "sockproxy: a build joining a container's network namespace is not available "
            f"to isolated clients (rule {RULE})"
        )
    if operation in FILTERED:
        # Docker ANDs the label filters of events (daemon/events/filter.go), so the
        # client's may stay (docker compose watches by label); Podman ORs them.
        own_labels = operation != "system.events" or engine_kind == "docker"
        query = _filtered_query(route.query, owner, own_labels=own_labels)
        return Fenced(target=_target(route, route.path, query))
    if operation == "container.create":
        return Fenced(body=await _container_create(objects, request, body))
    if operation in ("volume.create", "network.create"):
        if operation == "volume.create":
            await _volume_name_free(objects, body)
        return Fenced(body=_labelled(body, owner))
    if operation == "exec.create":
        container_name = route.param("id") or ""
        full = await objects.container(container_name)
        path = _with_id(route, container_name, full)
        return Fenced(target=_target(route, path, route.query))
    kind = route.section if route.section in _NOT_FOUND else ""
    name = route.param("name") if kind == "volume" else route.param("id")
    if not kind or name is None or operation in ("container.checkpoint", "system.df"):
        raise Unavailable(
            f"sockproxy: {operation} is not available to isolated clients (rule {RULE})"
        )
    if kind == "exec":
        await objects.exec(name)
        return Fenced()
    if kind == "volume":
        await objects.volume(name)
        return Fenced()
    if kind == "network":
        full = await objects.network(name, shared_ok=operation != "network.delete")
        if operation in ("network.connect", "network.disconnect"):
            container = _text(_top(body), "Container")
            await objects.container(container)
        return Fenced(target=_target(route, _with_id(route, name, full), route.query))
    full = await objects.container(name)
    if operation == "container.start" and request.containers:
        # Below API 1.24 a start body is a HostConfig, and Docker applies it.
        await _references(objects, request, JsonObject(()), _top(body))
    return Fenced(target=_target(route, _with_id(route, name, full), route.query), object_id=full)


class _Objects:
    """Fresh lookups of one owner's objects; each returns the full ID or raises NotFound."""

    def __init__(self, engine: EngineClient, owner: str) -> None:
        self.engine = engine
        self.owner = owner

    async def _get(self, kind: str, path: str, name: str) -> JsonObject:
        if not name:
            raise NotFound(_NOT_FOUND[kind].format(name))
        data = await self.engine.get_json(f"{_API}{path}")
        if data is None:
            raise NotFound(_NOT_FOUND[kind].format(name))
        if not isinstance(data, dict):
            raise LookupFailed(f"sockproxy: unexpected {kind} inspect answer from the engine")
        return JsonObject(tuple(data.items()))

    def _owned(self, labels: object) -> bool:
        return isinstance(labels, dict) and labels.get(OWNER_LABEL) == self.owner

    def _engines(self, labels: object) -> bool:
        """Made by the engine itself, not through sockproxy: no owner label."""
        return not (isinstance(labels, dict) and OWNER_LABEL in labels)

    async def container(self, name: str) -> str:
        data = await self._get("container", f"/containers/{quote(name, safe='')}/json", name)
        config = data.field("Config")
        labels = config.get("Labels") if isinstance(config, dict) else None
        if not self._owned(labels):
            raise NotFound(_NOT_FOUND["container"].format(name))
        return str(data.field("Id") or name)

    async def exec(self, exec_id: str) -> None:
        data = await self._get("exec", f"/exec/{quote(exec_id, safe='')}/json", exec_id)
        try:
            await self.container(str(data.field("ContainerID") or ""))
        except NotFound:
            raise NotFound(_NOT_FOUND["exec"].format(exec_id)) from None

    async def volume(self, name: str) -> None:
        data = await self._get("volume", f"/volumes/{quote(name, safe='')}", name)
        if not self._owned(data.field("Labels")):
            raise NotFound(_NOT_FOUND["volume"].format(name))

    async def volume_exists(self, name: str) -> bool:
        try:
            await self.volume(name)
        except NotFound:
            return await self.engine.get_json(f"{_API}/volumes/{quote(name, safe='')}") is not None
        return True

    async def network(self, name: str, *, shared_ok: bool) -> str:
        data = await self._get("network", f"/networks/{quote(name, safe='')}", name)
        network = str(data.field("Name") or "")
        labels = data.field("Labels")
        # A predefined name is shared only when the engine made that network:
        # "podman" is an ordinary name on Docker, and so is "bridge" on Podman.
        shared = shared_ok and network in PREDEFINED_NETWORKS and self._engines(labels)
        if not self._owned(labels) and not shared:
            raise NotFound(_NOT_FOUND["network"].format(name))
        return str(data.field("Id") or name)

    async def network_mode(self, name: str) -> None:
        """A predefined name in a create: a mode word only (Docker's "default"
        is no network), or a network that must be the engine's or the owner's."""
        if await self.engine.get_json(f"{_API}/networks/{quote(name, safe='')}") is not None:
            await self.network(name, shared_ok=True)


async def _container_create(objects: _Objects, request: Request, body: bytes | None) -> bytes:
    """Every object the new container refers to must be the owner's; then label it."""
    top = _top(body)
    host = top.field("HostConfig")
    host = host if isinstance(host, JsonObject) else JsonObject(())
    await _references(objects, request, top, host)
    return _labelled(body, objects.owner)


async def _references(
    objects: _Objects, request: Request, top: JsonObject, host: JsonObject
) -> None:
    """Every object the containers refer to must be the owner's."""
    checks: list[Coroutine[Any, Any, object]] = []
    for spec in request.containers:
        for ref in spec.volumes_from:
            checks.append(objects.container(ref.split(":", 1)[0]))
        for namespace in spec.namespaces:
            if namespace.mode is NamespaceMode.CONTAINER:
                checks.append(objects.container(namespace.target))
        for mount in spec.mounts:
            if mount.kind == "volume" and mount.source:
                checks.append(_named_volume(objects, mount))
    for link in _strings(host, "Links"):
        checks.append(objects.container(link.split(":", 1)[0].lstrip("/")))
    for network in _networks(top, host):
        if network in PREDEFINED_NETWORKS:
            checks.append(objects.network_mode(network))
        else:
            checks.append(objects.network(network, shared_ok=True))
    try:
        for check in checks:
            await check
    except NotFound as exc:
        # 403, not 404: the Docker CLI reads a 404 from create as a missing
        # image and tries to pull it. Missing and not owned read the same.
        raise Unavailable(f"sockproxy: {exc.message} (rule {RULE})") from None
    finally:
        for check in checks:
            check.close()  # those never awaited after a refusal (no "never awaited" warning)


async def _named_volume(objects: _Objects, mount: Mount) -> None:
    """A named volume must be the owner's; one that doesn't exist yet is
    created now, labelled (the engine would create it unlabelled), with the
    driver and options the mount gives (the engine would have used them)."""
    name = mount.source
    if await objects.volume_exists(name):
        await objects.volume(name)  # someone else's: NotFound
        return
    create: dict[str, object] = {"Name": name, "Labels": {OWNER_LABEL: objects.owner}}
    if mount.volume_driver:
        create["Driver"] = mount.volume_driver
    if mount.volume_options:
        create["DriverOpts"] = dict(mount.volume_options)
    created = await objects.engine.post_json(f"{_API}/volumes/create", create)
    if created is None:
        raise LookupFailed(f"sockproxy: could not create the volume {name}")
    await objects.volume(name)  # created by someone else in between: NotFound


async def _volume_name_free(objects: _Objects, body: bytes | None) -> None:
    """The engine answers a create of an existing volume with that volume:
    someone else's must not be handed out that way."""
    name = _text(_top(body), "Name")
    if name and await objects.volume_exists(name):
        try:
            await objects.volume(name)
        except NotFound:
            raise Unavailable(f"sockproxy: the volume name {name} is taken (rule {RULE})") from None


def _networks(top: JsonObject, host: JsonObject) -> list[str]:
    """User-defined networks a create attaches to (NetworkMode and EndpointsConfig)."""
    names: list[str] = []
    mode = _text(host, "NetworkMode")
    if mode and ":" not in mode:
        names.append(mode)
    networking = top.field("NetworkingConfig")
    if isinstance(networking, JsonObject):
        endpoints = networking.field("EndpointsConfig")
        if isinstance(endpoints, JsonObject):
            names.extend(key for key, _ in endpoints.entries())
    return list(dict.fromkeys(names))


def _labelled(body: bytes | None, owner: str) -> bytes:
    """The body with the owner label set (over whatever the client sent)."""
    top = _top(body)
    labels = top.field("Labels")
    pairs: tuple[tuple[str, JsonValue], ...] = ()
    if isinstance(labels, JsonObject):
        pairs = tuple((k, v) for k, v in labels.entries() if k != OWNER_LABEL)
    elif labels is not None:
        raise jsonread.InvalidBody("invalid JSON body: Labels must be an object")
    return jsonread.encode(top.replace("Labels", JsonObject((*pairs, (OWNER_LABEL, owner)))))


def _top(body: bytes | None) -> JsonObject:
    value = jsonread.decode(body) if body else JsonObject(())
    return jsonread.as_object(value, "request body")


def _text(obj: JsonObject, name: str) -> str:
    value = obj.field(name)
    return value if isinstance(value, str) else ""


def _strings(obj: JsonObject, name: str) -> list[str]:
    value = obj.field(name)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _with_id(route: Route, name: str, full: str) -> str:
    """The route's path naming the object by its full ID."""
    collection, _, rest = route.path[1:].partition("/")
    if not rest.startswith(name) or rest[len(name) : len(name) + 1] not in ("", "/"):
        raise LookupFailed("sockproxy: cannot rewrite the request path")
    return f"/{collection}/{quote(full, safe='')}{rest[len(name) :]}"


def _target(route: Route, path: str, query: str) -> str:
    version = f"/v{route.version}" if route.version else ""
    return f"{version}{path}" + (f"?{query}" if query else "")


def _filtered_query(query: str, owner: str, *, own_labels: bool = True) -> str:
    """The query with the owner's label filter added to the client's filters.

    Go reads ``r.Form.Get("filters")``: the first value; the rest are dropped
    here so nothing else could be read. Both of Docker's filter encodings
    (``{"label": ["a=b"]}`` and ``{"label": {"a=b": true}}``) are accepted.
    Without ``own_labels`` the client's label filters are refused: Podman
    ORs the label filters of ``events`` (libpod/events/filters.go
    ``applyFilters``), where one more label would widen what is shown.
    """
    pairs = parse_qsl(query, keep_blank_values=True)
    given = next((value for key, value in pairs if key == "filters"), "")
    filters: dict[str, list[str]] = {}
    if given:
        try:
            decoded = jsonread.decode(given.encode())
        except ProxyError as exc:
            raise jsonread.InvalidBody(f"invalid filters parameter: {exc.message}") from None
        if not isinstance(decoded, JsonObject):
            raise jsonread.InvalidBody("invalid filters parameter: not an object")
        for key, value in decoded.entries():
            if isinstance(value, list):
                filters[key] = [v for v in value if isinstance(v, str)]
            elif isinstance(value, JsonObject):
                filters[key] = [k for k, v in value.entries() if v is True]
            else:
                raise jsonread.InvalidBody(f"invalid filters parameter: {key}")
    if filters.get("label") and not own_labels:
        raise Unavailable(
            "sockproxy: label filters on events are not available to isolated clients "
            f"(rule {RULE})"
        )
    filters.setdefault("label", []).append(f"{OWNER_LABEL}={owner}")
    kept = "&".join(part for part in query.split("&") if part and not _is_filters(part))
    encoded = jsonread.encode(JsonObject(tuple((k, list(v)) for k, v in filters.items())))
    return (f"{kept}&" if kept else "") + "filters=" + quote(encoded.decode(), safe="")


def _is_filters(part: str) -> bool:
    return _key(part) == "filters"


def _key(part: str) -> str:
    pairs = parse_qsl(part, keep_blank_values=True)
    return pairs[0][0] if pairs else ""


def _replaced(query: str, name: str, value: str) -> str:
    """The query with every ``name`` parameter replaced by one with ``value``."""
    kept = [part for part in query.split("&") if part and _key(part) != name]
    return "&".join([*kept, f"{name}={quote(value, safe='')}"])
