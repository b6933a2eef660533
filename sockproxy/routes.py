"""Classify stage: method + request target -> the endpoint the engine will run.

In: the method and the raw request target (origin form, as framed). Out: a
``Route`` naming the operation (``container.create``, ``exec.start``,
``image.pull`` ...), its section, the API flavour (Docker-compatible or
libpod), the path parameters the engine will read (``id``, ``name`` ...),
which body normaliser applies, and whether the engine may hijack the
connection. An endpoint that means the same in both flavours has one name
(``POST /containers/create`` and ``POST /libpod/containers/create`` are both
``container.create``); libpod-only actions have their own (``pod.create``,
``container.mount``). ``docs/endpoints.md`` lists every name.

The proxy does not know which engine is behind it, so a target is routed
twice, as each engine's router would route it, and the two answers must
agree:

* moby (Docker Engine, API 1.24-1.43): gorilla/mux over the *decoded* path
  (``req.URL.Path``), each route registered as ``/v{version:[0-9.]+}`` + path
  and unversioned (moby api/server/server.go ``CreateMux``).
* Podman 4.3: gorilla/mux with ``UseEncodedPath()`` (pkg/api/server/server.go),
  so routing sees the *escaped* path and ``%2F`` stays inside a segment;
  handlers unescape the variables (pkg/api/handlers/utils ``GetVar``). The
  version prefix is ``/v{version:[0-9][0-9A-Za-z.-]*}``
  (pkg/api/server/handler_api.go ``VersionedPath``); libpod routes require it
  (except ``/libpod/_ping``), compat routes are registered with and without.

Both routers answer a path that ``cleanPath`` (Go's ``path.Clean``, keeping a
trailing slash; gorilla/mux mux.go) changes with a 301 to the cleaned path
and run nothing, so such targets are classified as the cleaned path they
redirect to. A trailing slash is not cleaned away: it routes as the engines
route it (mostly nowhere).

Refused (``operation == "unknown"``, with a ``reason``), because the two
engines would read them differently or sockproxy cannot be sure what they do:
a version prefix only one engine accepts (accepted: ``v[0-9][0-9.]*``);
characters outside RFC 3986's unreserved, sub-delims, ``:``, ``@``, ``/`` and
``%`` (backslash, ``#``, non-ASCII ...); malformed percent-encoding;
percent-encoded ``.`` (an encoded dot segment is a segment to moby and a
name to Podman); percent-encoded ``/`` outside libpod paths (a separator to
moby, part of the name to Podman; Podman's own client sends it only on libpod
paths), and an encoded ``/`` that makes a ``.`` or ``..`` segment; anything
else percent-decoding to a character outside that set (NUL, controls, ``%``,
``?`` ...); a ``POST /images/create`` query the engines could read as a pull
on one and an import on the other; a target both engines route, to different
operations or with different parameters; an endpoint neither engine has.

Matching: each engine's routes are indexed by (method, first path segment,
or the second under ``/libpod``) in registration order, and the first route
whose segments match wins, as in gorilla/mux; a ``{name:.*}`` variable spans
as many segments as it can before the fixed suffix (mux's greedy regexp).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote, unquote_plus

UNKNOWN = "unknown"


class Api(Enum):
    """The API flavour a path belongs to."""

    DOCKER = "docker"  # the Docker Engine API, served by moby and by Podman's compat layer
    LIBPOD = "libpod"  # Podman's own API, under /libpod


class Engine(Enum):
    """The engine whose router a catalogue row models."""

    DOCKER = "docker"  # moby, API 1.24-1.43
    PODMAN = "podman"  # Podman 4.3, compat and libpod routes


class Prefix(Enum):
    """Which version prefixes a row is registered with."""

    OPTIONAL = "optional"  # "/v{version}" + path, and path alone
    REQUIRED = "required"  # "/v{version}" + path only
    ABSENT = "absent"  # path alone only
    V3 = "v3"  # required, version starting 0-3 (Podman's /libpod/manifests v3 subrouter)
    V4 = "v4"  # required, version starting 4-9 (the v4 subrouter)


# Sections, in the order docs/endpoints.md lists them. Names follow the
# Docker API reference's tags where one exists, so admins can grep it.
SECTIONS: dict[str, str] = {
    "system": "ping, version, info, events, disk usage, registry login, system prune",
    "debug": "moby's /debug endpoints: expvar and pprof (heap dumps can hold secrets)",
    "container": "container lifecycle, inspection, logs, file copy, checkpoints",
    "exec": "exec sessions: create (the command and its privileges), start, resize, inspect",
    "image": "pull, push, import, load, save, tag, commit, delete, inspect, search",
    "build": "image builds, BuildKit's session and gRPC hijacks, build cache",
    "volume": "named volumes",
    "network": "networks and container attachment",
    "plugin": "Docker plugins (pull, create, enable and set grant host privileges)",
    "swarm": "swarm membership and settings",
    "node": "swarm nodes",
    "service": "swarm services (create and update carry container specs)",
    "task": "swarm tasks",
    "secret": "secrets (swarm, or Podman's secret store)",
    "config": "swarm configs",
    "distribution": "registry lookups of image manifests",
    "pod": "libpod pods",
    "manifest": "libpod manifest lists",
    "kube": "libpod Kubernetes YAML: play (creates pods and containers), down, generate",
    "generate": "libpod systemd unit generation",
}


@dataclass(frozen=True, slots=True)
class Route:
    """One classified request."""

    operation: str  # stable dotted name "section.action"; "unknown" when refused
    section: str
    api: Api
    path: str  # decoded, cleaned, without version prefix, /libpod prefix or query
    query: str  # the raw query string
    version: str | None  # the API version from the prefix, None when unversioned
    hijack: bool  # the engine may answer with 101 or a raw stream
    params: tuple[tuple[str, str], ...] = ()  # path parameters as the engine decodes them
    body: str = ""  # which body normaliser applies; "" for none
    reason: str = ""  # why the request was not recognised; "" when known

    @property
    def known(self) -> bool:
        return self.operation != UNKNOWN

    def param(self, name: str) -> str | None:
        """The value of one path parameter, None when the route has none of that name."""
        for key, value in self.params:
            if key == name:
                return value
        return None


# A template segment: literal text, or a variable spanning one segment
# ("{x}", mux's default "[^/]+"), any run of segments ("{x:.*}", which can
# hold slashes: image names) or a non-empty run ("{x:.+}").
_LIT, _ONE, _ANY, _PLUS = 0, 1, 2, 3
_VAR_KINDS = {"": _ONE, ".*": _ANY, ".+": _PLUS}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route of one engine's router: a row of the catalogue."""

    engine: Engine
    method: str
    template: str  # the engine's path template after the version prefix, params renamed
    operation: str
    body: str = ""
    hijack: bool = False
    prefix: Prefix = Prefix.OPTIONAL
    # A query condition (the route also depends on the query): "fromImage"
    # means the key is set (as the engine reads it), "!fromImage" that it is not.
    when: str = ""

    @property
    def section(self) -> str:
        return self.operation.split(".", 1)[0]

    @property
    def api(self) -> Api:
        return Api.LIBPOD if self.template.startswith("/libpod/") else Api.DOCKER


def _docker(
    method: str,
    template: str,
    operation: str,
    *,
    body: str = "",
    hijack: bool = False,
    when: str = "",
) -> Endpoint:
    return Endpoint(Engine.DOCKER, method, template, operation, body, hijack, Prefix.OPTIONAL, when)


def _compat(
    method: str,
    template: str,
    operation: str,
    *,
    body: str = "",
    hijack: bool = False,
    prefix: Prefix = Prefix.OPTIONAL,
    when: str = "",
) -> Endpoint:
    return Endpoint(Engine.PODMAN, method, template, operation, body, hijack, prefix, when)


def _libpod(
    method: str,
    template: str,
    operation: str,
    *,
    body: str = "",
    hijack: bool = False,
    prefix: Prefix = Prefix.REQUIRED,
) -> Endpoint:
    return Endpoint(Engine.PODMAN, method, "/libpod" + template, operation, body, hijack, prefix)


# moby's routes in registration order (cmd/dockerd/daemon.go routerOptions.Build:
# checkpoint, container, image, system, volume, build, session, swarm, plugin,
# distribution, grpc, network; then debug), from api/server/router/*/*.go at
# v24.0.9 (API 1.43). The route set is unchanged from 19.03 (API 1.40) to 28.x
# except PUT /volumes/{name} (23.0, API 1.42) and /containers/{id}/copy (gone
# in 26.0, API 1.45). Parameters are renamed after the API reference
# (swagger.yaml): containers, exec, networks and swarm objects "id"; images,
# volumes, plugins, distribution "name".
_DOCKER_ROUTES: tuple[Endpoint, ...] = (
    # Experimental (refused with 501 unless the daemon runs experimental);
    # registered first so the DELETE is not masked by DELETE /containers/{id:.*}.
    _docker("GET", "/containers/{id:.*}/checkpoints", "container.checkpoint-list"),
    _docker("POST", "/containers/{id:.*}/checkpoints", "container.checkpoint"),
    _docker("DELETE", "/containers/{id}/checkpoints/{checkpoint}", "container.checkpoint-delete"),
    _docker("HEAD", "/containers/{id:.*}/archive", "container.archive-info"),
    _docker("GET", "/containers/json", "container.list"),
    _docker("GET", "/containers/{id:.*}/export", "container.export"),
    _docker("GET", "/containers/{id:.*}/changes", "container.changes"),
    _docker("GET", "/containers/{id:.*}/json", "container.inspect"),
    _docker("GET", "/containers/{id:.*}/top", "container.top"),
    _docker("GET", "/containers/{id:.*}/logs", "container.logs"),
    _docker("GET", "/containers/{id:.*}/stats", "container.stats"),
    _docker("GET", "/containers/{id:.*}/attach/ws", "container.attach-ws", hijack=True),
    _docker("GET", "/exec/{id:.*}/json", "exec.inspect"),
    _docker("GET", "/containers/{id:.*}/archive", "container.archive-get"),
    _docker("POST", "/containers/create", "container.create", body="container-create"),
    _docker("POST", "/containers/{id:.*}/kill", "container.kill"),
    _docker("POST", "/containers/{id:.*}/pause", "container.pause"),
    _docker("POST", "/containers/{id:.*}/unpause", "container.unpause"),
    _docker("POST", "/containers/{id:.*}/restart", "container.restart"),
    # Below API 1.24 the body is a HostConfig applied at start (postContainersStart).
    _docker("POST", "/containers/{id:.*}/start", "container.start", body="container-start"),
    _docker("POST", "/containers/{id:.*}/stop", "container.stop"),
    _docker("POST", "/containers/{id:.*}/wait", "container.wait"),
    _docker("POST", "/containers/{id:.*}/resize", "container.resize"),
    _docker("POST", "/containers/{id:.*}/attach", "container.attach", hijack=True),
    # Copies a file out of the container below API 1.24; 404 from 1.24 on.
    _docker("POST", "/containers/{id:.*}/copy", "container.copy"),
    _docker("POST", "/containers/{id:.*}/exec", "exec.create", body="exec-create"),
    _docker("POST", "/exec/{id:.*}/start", "exec.start", hijack=True),
    _docker("POST", "/exec/{id:.*}/resize", "exec.resize"),
    _docker("POST", "/containers/{id:.*}/rename", "container.rename"),
    _docker("POST", "/containers/{id:.*}/update", "container.update", body="container-update"),
    _docker("POST", "/containers/prune", "container.prune"),
    _docker("POST", "/commit", "image.commit"),
    _docker("PUT", "/containers/{id:.*}/archive", "container.archive-put"),
    _docker("DELETE", "/containers/{id:.*}", "container.delete"),
    _docker("GET", "/images/json", "image.list"),
    _docker("GET", "/images/search", "image.search"),
    _docker("GET", "/images/get", "image.save"),
    _docker("GET", "/images/{name:.*}/get", "image.save"),
    _docker("GET", "/images/{name:.*}/history", "image.history"),
    _docker("GET", "/images/{name:.*}/json", "image.inspect"),
    _docker("POST", "/images/load", "image.load"),
    # postImagesCreate pulls when r.Form.Get("fromImage") is not empty, else
    # imports fromSrc (a URL it downloads, or "-" for the body).
    _docker("POST", "/images/create", "image.pull", when="fromImage"),
    _docker("POST", "/images/create", "image.import", when="!fromImage"),
    _docker("POST", "/images/{name:.*}/push", "image.push"),
    _docker("POST", "/images/{name:.*}/tag", "image.tag"),
    _docker("POST", "/images/prune", "image.prune"),
    _docker("DELETE", "/images/{name:.*}", "image.delete"),
    # CORS preflight: answers 200 and runs nothing.
    _docker("OPTIONS", "/{path:.*}", "system.options"),
    _docker("GET", "/_ping", "system.ping"),
    _docker("HEAD", "/_ping", "system.ping"),
    _docker("GET", "/events", "system.events"),
    _docker("GET", "/info", "system.info"),
    _docker("GET", "/version", "system.version"),
    _docker("GET", "/system/df", "system.df"),
    _docker("POST", "/auth", "system.auth"),
    _docker("GET", "/volumes", "volume.list"),
    _docker("GET", "/volumes/{name:.*}", "volume.inspect"),
    _docker("POST", "/volumes/create", "volume.create", body="volume-create"),
    _docker("POST", "/volumes/prune", "volume.prune"),
    _docker("PUT", "/volumes/{name:.*}", "volume.update"),
    _docker("DELETE", "/volumes/{name:.*}", "volume.delete"),
    _docker("POST", "/build", "build.image"),
    _docker("POST", "/build/prune", "build.prune"),
    _docker("POST", "/build/cancel", "build.cancel"),
    _docker("POST", "/session", "build.session", hijack=True),
    _docker("POST", "/swarm/init", "swarm.init"),
    _docker("POST", "/swarm/join", "swarm.join"),
    _docker("POST", "/swarm/leave", "swarm.leave"),
    _docker("GET", "/swarm", "swarm.inspect"),
    _docker("GET", "/swarm/unlockkey", "swarm.unlockkey"),
    _docker("POST", "/swarm/update", "swarm.update"),
    _docker("POST", "/swarm/unlock", "swarm.unlock"),
    _docker("GET", "/services", "service.list"),
    _docker("GET", "/services/{id}", "service.inspect"),
    _docker("POST", "/services/create", "service.create", body="service"),
    _docker("POST", "/services/{id}/update", "service.update", body="service"),
    _docker("DELETE", "/services/{id}", "service.delete"),
    _docker("GET", "/services/{id}/logs", "service.logs"),
    _docker("GET", "/nodes", "node.list"),
    _docker("GET", "/nodes/{id}", "node.inspect"),
    _docker("DELETE", "/nodes/{id}", "node.delete"),
    _docker("POST", "/nodes/{id}/update", "node.update"),
    _docker("GET", "/tasks", "task.list"),
    _docker("GET", "/tasks/{id}", "task.inspect"),
    _docker("GET", "/tasks/{id}/logs", "task.logs"),
    _docker("GET", "/secrets", "secret.list"),
    _docker("POST", "/secrets/create", "secret.create"),
    _docker("DELETE", "/secrets/{id}", "secret.delete"),
    _docker("GET", "/secrets/{id}", "secret.inspect"),
    _docker("POST", "/secrets/{id}/update", "secret.update"),
    _docker("GET", "/configs", "config.list"),
    _docker("POST", "/configs/create", "config.create"),
    _docker("DELETE", "/configs/{id}", "config.delete"),
    _docker("GET", "/configs/{id}", "config.inspect"),
    _docker("POST", "/configs/{id}/update", "config.update"),
    _docker("GET", "/plugins", "plugin.list"),
    _docker("GET", "/plugins/{name:.*}/json", "plugin.inspect"),
    _docker("GET", "/plugins/privileges", "plugin.privileges"),
    _docker("DELETE", "/plugins/{name:.*}", "plugin.delete"),
    _docker("POST", "/plugins/{name:.*}/enable", "plugin.enable"),
    _docker("POST", "/plugins/{name:.*}/disable", "plugin.disable"),
    _docker("POST", "/plugins/pull", "plugin.pull", body="plugin"),
    _docker("POST", "/plugins/{name:.*}/push", "plugin.push"),
    _docker("POST", "/plugins/{name:.*}/upgrade", "plugin.upgrade", body="plugin"),
    # The body sets plugin env, args, and the host paths of settable mounts
    # and devices; no normaliser reads it yet (policies should deny plugin.set).
    _docker("POST", "/plugins/{name:.*}/set", "plugin.set", body="plugin"),
    _docker("POST", "/plugins/create", "plugin.create"),
    _docker("GET", "/distribution/{name:.*}/json", "distribution.inspect"),
    _docker("POST", "/grpc", "build.grpc", hijack=True),
    _docker("GET", "/networks", "network.list"),
    _docker("GET", "/networks/", "network.list"),
    _docker("GET", "/networks/{id:.+}", "network.inspect"),
    _docker("POST", "/networks/create", "network.create", body="network-create"),
    _docker("POST", "/networks/{id:.*}/connect", "network.connect", body="network-connect"),
    _docker("POST", "/networks/{id:.*}/disconnect", "network.disconnect", body="network-connect"),
    _docker("POST", "/networks/prune", "network.prune"),
    _docker("DELETE", "/networks/{id:.*}", "network.delete"),
    # Unversioned, any method, up to 27.x (server.go); GET, versioned too, from 28.0.
    # Only GET is catalogued: other methods are refused.
    _docker("GET", "/debug/vars", "debug.vars"),
    _docker("GET", "/debug/pprof/", "debug.pprof"),
    _docker("GET", "/debug/pprof/cmdline", "debug.pprof"),
    _docker("GET", "/debug/pprof/profile", "debug.pprof"),
    _docker("GET", "/debug/pprof/symbol", "debug.pprof"),
    _docker("GET", "/debug/pprof/trace", "debug.pprof"),
    _docker("GET", "/debug/pprof/{name}", "debug.pprof"),
)

# Podman 4.3's routes in registration order (pkg/api/server/server.go calls
# register_*.go in this order: auth, archive, containers, distribution,
# events, exec, generate, healthcheck, images, info, manifest, monitor,
# networks, ping, kube, plugins, pods, secrets, swagger, swarm, system,
# version, volumes). Left out, because they run nothing: the compat stubs
# that answer "not supported" for any method (/distribution/{name}/json,
# /monitor, /plugins) and the "/swarm/", "/nodes/", ... prefixes that answer
# "not a swarm manager"; none of them shadows a later route. Also left out:
# the second, identical registration of GET /libpod/generate/kube.
_PODMAN_ROUTES: tuple[Endpoint, ...] = (
    _compat("POST", "/auth", "system.auth"),
    _compat("GET", "/containers/{id}/archive", "container.archive-get"),
    _compat("PUT", "/containers/{id}/archive", "container.archive-put"),
    _compat("HEAD", "/containers/{id}/archive", "container.archive-info"),
    _libpod("GET", "/containers/{id}/archive", "container.archive-get"),
    _libpod("PUT", "/containers/{id}/archive", "container.archive-put"),
    _libpod("HEAD", "/containers/{id}/archive", "container.archive-info"),
    _compat("POST", "/containers/create", "container.create", body="container-create"),
    _compat("GET", "/containers/json", "container.list"),
    _compat("POST", "/containers/prune", "container.prune"),
    _compat("DELETE", "/containers/{id}", "container.delete"),
    _compat("GET", "/containers/{id}/json", "container.inspect"),
    _compat("POST", "/containers/{id}/kill", "container.kill"),
    _compat("GET", "/containers/{id}/logs", "container.logs"),
    _compat("POST", "/containers/{id}/pause", "container.pause"),
    _compat("POST", "/containers/{id}/restart", "container.restart"),
    # Podman ignores a start body; the name and normaliser match moby's route.
    _compat("POST", "/containers/{id}/start", "container.start", body="container-start"),
    _compat("GET", "/containers/{id}/stats", "container.stats"),
    _compat("POST", "/containers/{id}/stop", "container.stop"),
    _compat("GET", "/containers/{id}/top", "container.top"),
    _compat("POST", "/containers/{id}/unpause", "container.unpause"),
    _compat("POST", "/containers/{id}/wait", "container.wait"),
    _compat("POST", "/containers/{id}/attach", "container.attach", hijack=True),
    _compat("POST", "/containers/{id}/resize", "container.resize"),
    _compat("GET", "/containers/{id}/export", "container.export"),
    _compat("POST", "/containers/{id}/rename", "container.rename"),
    _libpod("POST", "/containers/create", "container.create", body="libpod-container-create"),
    _libpod("GET", "/containers/json", "container.list"),
    _libpod("POST", "/containers/prune", "container.prune"),
    _libpod("GET", "/containers/showmounted", "container.show-mounted"),
    _libpod("DELETE", "/containers/{id}", "container.delete"),
    _libpod("GET", "/containers/{id}/json", "container.inspect"),
    _libpod("POST", "/containers/{id}/kill", "container.kill"),
    # Mounts the container's root file system on the host and returns its path.
    _libpod("POST", "/containers/{id}/mount", "container.mount"),
    _libpod("POST", "/containers/{id}/unmount", "container.unmount"),
    _libpod("GET", "/containers/{id}/logs", "container.logs"),
    _libpod("POST", "/containers/{id}/pause", "container.pause"),
    _libpod("POST", "/containers/{id}/restart", "container.restart"),
    _libpod("POST", "/containers/{id}/start", "container.start"),
    _libpod("GET", "/containers/{id}/stats", "container.stats"),
    _libpod("GET", "/containers/stats", "container.stats"),
    _libpod("GET", "/containers/{id}/top", "container.top"),
    _libpod("POST", "/containers/{id}/unpause", "container.unpause"),
    _libpod("POST", "/containers/{id}/wait", "container.wait"),
    _libpod("GET", "/containers/{id}/exists", "container.exists"),
    _libpod("POST", "/containers/{id}/stop", "container.stop"),
    _libpod("POST", "/containers/{id}/attach", "container.attach", hijack=True),
    _libpod("POST", "/containers/{id}/resize", "container.resize"),
    _libpod("GET", "/containers/{id}/export", "container.export"),
    _libpod("POST", "/containers/{id}/checkpoint", "container.checkpoint"),
    # With import=true the body is a checkpoint archive holding the container's config.
    _libpod("POST", "/containers/{id}/restore", "container.restore"),
    _compat("GET", "/containers/{id}/changes", "container.changes"),
    _libpod("GET", "/containers/{id}/changes", "container.changes"),
    _libpod("POST", "/containers/{id}/init", "container.init"),
    _libpod("POST", "/containers/{id}/rename", "container.rename"),
    # The body is an OCI LinuxResources, device cgroup rules included: the
    # container-update normaliser reads both shapes.
    _libpod("POST", "/containers/{id}/update", "container.update", body="container-update"),
    _compat("GET", "/events", "system.events"),
    _libpod("GET", "/events", "system.events"),
    _compat("POST", "/containers/{id}/exec", "exec.create", body="exec-create"),
    _compat("POST", "/exec/{id}/start", "exec.start", hijack=True),
    _compat("POST", "/exec/{id}/resize", "exec.resize"),
    _compat("GET", "/exec/{id}/json", "exec.inspect"),
    _libpod("POST", "/containers/{id}/exec", "exec.create", body="libpod-exec-create"),
    _libpod("POST", "/exec/{id}/start", "exec.start", hijack=True),
    _libpod("POST", "/exec/{id}/resize", "exec.resize"),
    _libpod("GET", "/exec/{id}/json", "exec.inspect"),
    _libpod("GET", "/generate/{name:.*}/systemd", "generate.systemd"),
    _libpod("GET", "/generate/kube", "kube.generate"),
    _libpod("GET", "/containers/{id:.*}/healthcheck", "container.healthcheck"),
    # Routed by query (mux Queries): fromImage present pulls, else fromSrc present imports.
    _compat("POST", "/images/create", "image.pull", when="fromImage"),
    _compat("POST", "/images/create", "image.import", when="fromSrc"),
    _compat("GET", "/images/json", "image.list"),
    _compat("POST", "/images/load", "image.load"),
    _compat("POST", "/images/prune", "image.prune"),
    _compat("GET", "/images/search", "image.search"),
    _compat("DELETE", "/images/{name:.*}", "image.delete"),
    _compat("POST", "/images/{name:.*}/push", "image.push"),
    _compat("GET", "/images/{name:.*}/get", "image.save"),
    _compat("GET", "/images/get", "image.save"),
    _compat("GET", "/images/{name:.*}/history", "image.history"),
    _compat("GET", "/images/{name:.*}/json", "image.inspect"),
    _compat("POST", "/images/{name:.*}/tag", "image.tag"),
    _compat("POST", "/commit", "image.commit"),
    _compat("POST", "/build", "build.image"),
    _libpod("POST", "/images/{name:.*}/push", "image.push"),
    _libpod("GET", "/images/{name:.*}/exists", "image.exists"),
    _libpod("GET", "/images/{name:.*}/tree", "image.tree"),
    _libpod("GET", "/images/{name:.*}/history", "image.history"),
    _libpod("GET", "/images/json", "image.list"),
    _libpod("POST", "/images/load", "image.load"),
    # Imports the body, or downloads the "url" query parameter.
    _libpod("POST", "/images/import", "image.import"),
    _libpod("DELETE", "/images/remove", "image.delete"),
    _libpod("DELETE", "/images/{name:.*}", "image.delete"),
    _libpod("POST", "/images/pull", "image.pull"),
    _libpod("POST", "/images/prune", "image.prune"),
    _libpod("GET", "/images/search", "image.search"),
    _libpod("GET", "/images/{name:.*}/get", "image.save"),
    _libpod("GET", "/images/export", "image.save"),
    _libpod("GET", "/images/{name:.*}/json", "image.inspect"),
    _libpod("POST", "/images/{name:.*}/tag", "image.tag"),
    _libpod("POST", "/commit", "image.commit"),
    _libpod("POST", "/images/{name:.*}/untag", "image.untag"),
    _libpod("GET", "/images/{name}/changes", "image.changes"),
    _libpod("POST", "/build", "build.image"),
    # Copies an image to another host or user over ssh.
    _libpod("POST", "/images/scp/{name:.*}", "image.scp"),
    _compat("GET", "/info", "system.info"),
    _libpod("GET", "/info", "system.info"),
    # register_manifest.go: two subrouters chosen by the version's first digit.
    _libpod("POST", "/manifests/{name}/push", "manifest.push", prefix=Prefix.V3),
    _libpod(
        "POST",
        "/manifests/{name:.*}/registry/{destination:.*}",
        "manifest.push",
        prefix=Prefix.V4,
    ),
    _libpod("POST", "/manifests/create", "manifest.create", prefix=Prefix.V3),
    _libpod("POST", "/manifests/{name:.*}", "manifest.create", prefix=Prefix.V4),
    _libpod("GET", "/manifests/{name:.*}/exists", "manifest.exists", prefix=Prefix.V3),
    _libpod("GET", "/manifests/{name:.*}/exists", "manifest.exists", prefix=Prefix.V4),
    _libpod("GET", "/manifests/{name:.*}/json", "manifest.inspect", prefix=Prefix.V3),
    _libpod("GET", "/manifests/{name:.*}/json", "manifest.inspect", prefix=Prefix.V4),
    _libpod("PUT", "/manifests/{name:.*}", "manifest.modify", prefix=Prefix.V4),
    _libpod("POST", "/manifests/{name:.*}/add", "manifest.modify", prefix=Prefix.V3),
    # v3 DELETE removes one digest from the list (a modification); v4 deletes the list.
    _libpod("DELETE", "/manifests/{name:.*}", "manifest.modify", prefix=Prefix.V3),
    _libpod("DELETE", "/manifests/{name:.*}", "manifest.delete", prefix=Prefix.V4),
    _compat("DELETE", "/networks/{id}", "network.delete"),
    _compat("GET", "/networks/{id}", "network.inspect"),
    _compat("GET", "/networks", "network.list"),
    _compat("POST", "/networks/create", "network.create", body="network-create"),
    _compat("POST", "/networks/{id}/connect", "network.connect", body="network-connect"),
    _compat("POST", "/networks/{id}/disconnect", "network.disconnect", body="network-connect"),
    _compat("POST", "/networks/prune", "network.prune"),
    _libpod("DELETE", "/networks/{id}", "network.delete"),
    _libpod("GET", "/networks/{id}/exists", "network.exists"),
    _libpod("GET", "/networks/json", "network.list"),
    _libpod("GET", "/networks/{id}/json", "network.inspect"),
    _libpod("GET", "/networks/{id}", "network.inspect"),
    # No normaliser for libpod's network body yet (moby's is "network-create").
    _libpod("POST", "/networks/create", "network.create"),
    _libpod("POST", "/networks/{id}/connect", "network.connect", body="network-connect"),
    _libpod("POST", "/networks/{id}/disconnect", "network.disconnect", body="network-connect"),
    _libpod("POST", "/networks/prune", "network.prune"),
    _compat("GET", "/_ping", "system.ping"),
    _compat("HEAD", "/_ping", "system.ping"),
    _libpod("GET", "/_ping", "system.ping", prefix=Prefix.OPTIONAL),
    _libpod("HEAD", "/_ping", "system.ping", prefix=Prefix.OPTIONAL),
    _libpod("POST", "/play/kube", "kube.play", body="libpod-kube"),
    _libpod("POST", "/kube/play", "kube.play", body="libpod-kube"),
    _libpod("DELETE", "/play/kube", "kube.down"),
    _libpod("DELETE", "/kube/play", "kube.down"),
    _libpod("GET", "/kube/generate", "kube.generate"),
    _libpod("GET", "/pods/json", "pod.list"),
    _libpod("POST", "/pods/create", "pod.create", body="libpod-pod-create"),
    _libpod("POST", "/pods/prune", "pod.prune"),
    _libpod("DELETE", "/pods/{name}", "pod.delete"),
    _libpod("GET", "/pods/{name}/json", "pod.inspect"),
    _libpod("GET", "/pods/{name}/exists", "pod.exists"),
    _libpod("POST", "/pods/{name}/kill", "pod.kill"),
    _libpod("POST", "/pods/{name}/pause", "pod.pause"),
    _libpod("POST", "/pods/{name}/restart", "pod.restart"),
    _libpod("POST", "/pods/{name}/start", "pod.start"),
    _libpod("POST", "/pods/{name}/stop", "pod.stop"),
    _libpod("POST", "/pods/{name}/unpause", "pod.unpause"),
    _libpod("GET", "/pods/{name}/top", "pod.top"),
    _libpod("GET", "/pods/stats", "pod.stats"),
    # The driver and driveropts query parameters choose where the secret is
    # stored; the "shell" driver runs commands given in driveropts.
    _libpod("POST", "/secrets/create", "secret.create"),
    _libpod("GET", "/secrets/json", "secret.list"),
    _libpod("GET", "/secrets/{id}/json", "secret.inspect"),
    _libpod("DELETE", "/secrets/{id}", "secret.delete"),
    _compat("GET", "/secrets", "secret.list"),
    _compat("POST", "/secrets/create", "secret.create"),
    _compat("GET", "/secrets/{id}", "secret.inspect"),
    # register_secrets.go registers the unversioned DELETE as "/secret/{name}".
    _compat("DELETE", "/secrets/{id}", "secret.delete", prefix=Prefix.REQUIRED),
    _compat("DELETE", "/secret/{id}", "secret.delete", prefix=Prefix.ABSENT),
    _compat("POST", "/secrets/{id}/update", "secret.update"),
    _libpod("GET", "/swagger", "system.swagger"),
    _compat("GET", "/system/df", "system.df"),
    _libpod("POST", "/system/prune", "system.prune"),
    _libpod("GET", "/system/df", "system.df"),
    _compat("GET", "/version", "system.version"),
    _libpod("GET", "/version", "system.version"),
    _libpod("POST", "/volumes/create", "volume.create", body="libpod-volume-create"),
    _libpod("GET", "/volumes/{name}/exists", "volume.exists"),
    _libpod("GET", "/volumes/json", "volume.list"),
    _libpod("POST", "/volumes/prune", "volume.prune"),
    _libpod("GET", "/volumes/{name}/json", "volume.inspect"),
    _libpod("DELETE", "/volumes/{name}", "volume.delete"),
    _compat("GET", "/volumes", "volume.list"),
    _compat("POST", "/volumes/create", "volume.create", body="volume-create"),
    _compat("GET", "/volumes/{name}", "volume.inspect"),
    _compat("DELETE", "/volumes/{name}", "volume.delete"),
    _compat("POST", "/volumes/prune", "volume.prune"),
)

ENDPOINTS: tuple[Endpoint, ...] = _DOCKER_ROUTES + _PODMAN_ROUTES


# -- the matcher ----------------------------------------------------------------

_Segment = tuple[int, str]  # (kind, literal text or parameter name)


@dataclass(frozen=True, slots=True)
class _Compiled:
    endpoint: Endpoint
    segments: tuple[_Segment, ...]
    variadic: bool  # holds a variable that spans several segments


def _compile(endpoint: Endpoint) -> _Compiled:
    segments: list[_Segment] = []
    for text in endpoint.template[1:].split("/"):
        if text.startswith("{"):
            name, _, pattern = text[1:-1].partition(":")
            segments.append((_VAR_KINDS[pattern], name))
        else:
            segments.append((_LIT, text))
    variadic = any(kind in (_ANY, _PLUS) for kind, _ in segments)
    return _Compiled(endpoint, tuple(segments), variadic)


def _head(segments: Sequence[str]) -> str:
    """The index key of a path: its first segment, and the second under /libpod."""
    if segments[0] == "libpod" and len(segments) > 1:
        return "libpod/" + segments[1]
    return segments[0]


def _index(
    rows: Sequence[Endpoint],
) -> tuple[dict[tuple[str, str], tuple[_Compiled, ...]], dict[str, tuple[_Compiled, ...]]]:
    """Rows by (method, head), in registration order; rows starting with a variable by method."""
    by_head: dict[tuple[str, str], tuple[_Compiled, ...]] = {}
    wild: dict[str, tuple[_Compiled, ...]] = {}
    for row in rows:
        compiled = _compile(row)
        first = compiled.segments[0]
        if first[0] != _LIT:
            wild[row.method] = (*wild.get(row.method, ()), compiled)
            continue
        second = compiled.segments[1] if len(compiled.segments) > 1 else (_LIT, "")
        head = _head((first[1], second[1])) if second[0] == _LIT else first[1]
        if first[1] == "libpod" and second[0] != _LIT:
            raise AssertionError(f"{row.template}: a variable right after /libpod")
        key = (row.method, head)
        by_head[key] = (*by_head.get(key, ()), compiled)
    for method in wild:
        # Looking the wild rows up after the others keeps registration order
        # only if a method has nothing else.
        if any(key[0] == method for key in by_head):
            raise AssertionError(f"{method}: wild rows mixed with others")
    return by_head, wild


_DOCKER_INDEX = _index(_DOCKER_ROUTES)
_PODMAN_INDEX = _index(_PODMAN_ROUTES)


def _bind(
    pattern: tuple[_Segment, ...], pi: int, segments: Sequence[str], si: int, out: list[str]
) -> bool:
    """Match segments[si:] against pattern[pi:], collecting variables into out.

    A variable spanning segments takes as many as it can (the leftmost-first,
    greedy choice of the engines' Go regexps).
    """
    if pi == len(pattern):
        return si == len(segments)
    kind, text = pattern[pi]
    if kind == _LIT:
        return (
            si < len(segments)
            and segments[si] == text
            and _bind(pattern, pi + 1, segments, si + 1, out)
        )
    if kind == _ONE:
        if si < len(segments) and segments[si]:
            out.append(segments[si])
            if _bind(pattern, pi + 1, segments, si + 1, out):
                return True
            out.pop()
        return False
    rest = len(pattern) - pi - 1  # every later pattern segment needs a segment
    for end in range(len(segments) - rest, si, -1):
        value = "/".join(segments[si:end])
        if kind == _PLUS and not value:
            continue
        out.append(value)
        if _bind(pattern, pi + 1, segments, end, out):
            return True
        out.pop()
    return False


def _query_value(query: str, key: str) -> str | None:
    """The first value of key, as Go's url.Values.Get and mux's Queries read it."""
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name and unquote_plus(name) == key:
            return unquote_plus(value)
    return None


def _query_holds(engine: Engine, when: str, query: str) -> bool:
    negate = when.startswith("!")
    value = _query_value(query, when.lstrip("!"))
    # moby reads r.Form.Get(key) != ""; Podman's mux Queries("key", "{key}")
    # matches any value, empty included.
    held = bool(value) if engine is Engine.DOCKER else value is not None
    return held != negate


@dataclass(frozen=True, slots=True)
class _Match:
    endpoint: Endpoint
    params: tuple[tuple[str, str], ...]


_ACCEPTS: dict[Prefix, tuple[bool, bool]] = {
    # (unversioned accepted, versioned accepted)
    Prefix.OPTIONAL: (True, True),
    Prefix.REQUIRED: (False, True),
    Prefix.ABSENT: (True, False),
    Prefix.V3: (False, True),
    Prefix.V4: (False, True),
}


def _route(
    engine: Engine, method: str, segments: Sequence[str], version: str | None, query: str
) -> _Match | None:
    """The first of the engine's routes that takes this request, as gorilla/mux picks it."""
    if not segments:
        return None
    by_head, wild = _DOCKER_INDEX if engine is Engine.DOCKER else _PODMAN_INDEX
    candidates = by_head.get((method, _head(segments)), ()) or wild.get(method, ())
    for row in candidates:
        endpoint = row.endpoint
        if not _ACCEPTS[endpoint.prefix][version is not None]:
            continue
        if version is not None and endpoint.prefix is not Prefix.OPTIONAL:
            if endpoint.prefix is Prefix.V3 and version[0] not in "0123":
                continue
            if endpoint.prefix is Prefix.V4 and version[0] in "0123":
                continue
        if not row.variadic and len(row.segments) != len(segments):
            continue
        values: list[str] = []
        if not _bind(row.segments, 0, segments, 0, values):
            continue
        if endpoint.when and not _query_holds(engine, endpoint.when, query):
            continue
        names = [text for kind, text in row.segments if kind != _LIT]
        if engine is Engine.PODMAN:
            # Podman routes on the escaped path and unescapes variables (GetVar).
            values = [unquote(value) for value in values]
        return _Match(endpoint, tuple(zip(names, values, strict=True)))
    return None


# -- the target -----------------------------------------------------------------

# Characters either engine reads the same way, raw or decoded: RFC 3986
# unreserved, sub-delims, ":" and "@". Anything else in a path (a backslash,
# "#", quotes, braces, non-ASCII) is refused.
_PLAIN = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@"
)
_RAW = _PLAIN | {"/", "%"}
# Decoded from %XX: plain characters except "."; "/" only on libpod paths.
_DECODABLE = _PLAIN - {"."}
_ESCAPE = re.compile(r"%(.?.?)")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_QUERY_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Version prefixes: moby "/v{version:[0-9.]+}" (api/server/server.go) on the
# decoded path; Podman "/v{version:[0-9][0-9A-Za-z.-]*}" on the escaped path.
# Accepted only where both read a version: their intersection.
_DOCKER_VERSION = re.compile(r"v[0-9.]+")
_PODMAN_VERSION = re.compile(r"v[0-9][0-9A-Za-z.-]*")
_SHARED_VERSION = re.compile(r"v[0-9][0-9.]*")


def clean_path(path: str) -> str:
    """Clean a path as gorilla/mux does before routing (``cleanPath`` in mux.go).

    Go's ``path.Clean`` (``//``, ``.`` and ``..`` resolved lexically, never
    above the root), but a trailing slash is kept.
    """
    if not path.startswith("/"):
        path = "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    cleaned = "/" + "/".join(parts)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def _refuse(reason: str, api: Api, path: str, query: str, version: str | None) -> Route:
    return Route(UNKNOWN, UNKNOWN, api, path, query, version, False, reason=reason)


@functools.lru_cache(maxsize=4096)  # pure, and targets repeat
def classify(method: str, target: str) -> Route:
    """Name the endpoint a request is for, or refuse it with a reason."""
    raw, _, query = target.partition("?")
    if not raw.startswith("/"):
        return _refuse("the request target is not a path", Api.DOCKER, raw, query, None)
    bad = next((char for char in raw if char not in _RAW), None)
    if bad is not None:
        return _refuse(f"the path holds {bad!r}", Api.DOCKER, raw, query, None)

    # Podman's view: the escaped path, cleaned.
    podman_path = clean_path(raw)
    podman_segments = podman_path[1:].split("/")
    prefixed = _PODMAN_VERSION.fullmatch(podman_segments[0]) is not None
    libpod = len(podman_segments) > prefixed and podman_segments[int(prefixed)] == "libpod"
    api = Api.LIBPOD if libpod else Api.DOCKER
    slashes = False
    for escape in _ESCAPE.finditer(raw):
        if _HEX2.fullmatch(escape.group(1)) is None:
            return _refuse("malformed percent-encoding in the path", api, raw, query, None)
        char = chr(int(escape.group(1), 16))
        if char == "/" and libpod:
            # Podman's client escapes "/" in names (url.PathEscape in
            # pkg/bindings); moby has no route under /libpod.
            slashes = True
        elif char not in _DECODABLE:
            return _refuse(f"percent-encoded {char!r} in the path", api, raw, query, None)
    # moby's view: the decoded path, cleaned.
    decoded = unquote(podman_path)
    if slashes and any(part in (".", "..") for part in decoded.split("/")):
        # A name Podman would take whole, but a segment moby would clean away.
        return _refuse("an encoded '/' makes a '.' or '..' segment", api, decoded, query, None)
    docker_segments = decoded[1:].split("/")

    version: str | None = None
    first = podman_segments[0]
    if prefixed or _DOCKER_VERSION.fullmatch(docker_segments[0]):
        if _SHARED_VERSION.fullmatch(first) is None:
            return _refuse(
                f"version prefix {first!r} is not read alike by Docker and Podman",
                api,
                decoded,
                query,
                None,
            )
        version = first[1:]
        docker_segments = docker_segments[1:]
        podman_segments = podman_segments[1:]
    path = "/" + "/".join(docker_segments[1:] if libpod else docker_segments)

    docker = _route(Engine.DOCKER, method, docker_segments, version, query)
    podman = _route(Engine.PODMAN, method, podman_segments, version, query)
    match = docker or podman
    if match is None:
        return _refuse("endpoint not recognised", api, path, query, version)
    if (
        docker is not None
        and podman is not None
        and (
            (docker.endpoint.operation, docker.params) != (podman.endpoint.operation, podman.params)
        )
    ):
        if docker.endpoint.operation != podman.endpoint.operation:
            reason = (
                f"Docker would run {docker.endpoint.operation}, Podman {podman.endpoint.operation}"
            )
        else:
            reason = (
                f"Docker and Podman would read other parameters for {docker.endpoint.operation}"
            )
        return _refuse(reason, api, path, query, version)
    endpoint = match.endpoint
    if endpoint.when and (";" in query or _QUERY_ESCAPE.search(query)):
        # mux splits queries at ";" as Go did before 1.17; a bad escape fails
        # moby's ParseForm but only skips the pair in mux's Queries.
        return _refuse(
            f"the query of {endpoint.operation} is read differently by the engines",
            api,
            path,
            query,
            version,
        )
    return Route(
        endpoint.operation,
        endpoint.section,
        api,
        path,
        query,
        version,
        endpoint.hijack,
        match.params,
        endpoint.body,
    )
