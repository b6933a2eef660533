"""Normalise stage: a classified request and its body -> ``sockproxy.model.Request``.

In: the operation and section from ``routes``, the route's body kind, the raw
query string and the (bounded, de-chunked) body. Out: one ``Request`` whose
specs say what the engine would do with the body, read as the engine reads
it: Docker-compatible and libpod differences end here. Refused with ``400``:
bodies that are not what the engine accepts (``jsonread.InvalidBody``) and
bodies or queries an engine could read differently from sockproxy
(``jsonread.AmbiguousBody``).

One module per flavour (``docker``, ``libpod``, ``kube``, ``build``) and the
shared spellings they rely on (``binds``, ``caps``, ``filesystems``,
``namespaces``, ``security``, ``query``).
"""

from __future__ import annotations

import dataclasses

from sockproxy.model import Request
from sockproxy.normalize import build, docker, kube, libpod
from sockproxy.normalize.fields import Notes
from sockproxy.normalize.query import Query

BODY_KINDS = frozenset(
    {
        "container-create",
        "container-update",
        "container-start",
        "exec-create",
        "volume-create",
        "network-create",
        "network-connect",
        "service",
        "plugin",
        "libpod-container-create",
        "libpod-exec-create",
        "libpod-volume-create",
        "libpod-pod-create",
        "libpod-kube",
        "",
    }
)


def normalize(
    operation: str, section: str, body_kind: str, query: str, body: bytes | None
) -> Request:
    """The normalised request the policy decides on."""
    request = Request(operation=operation, section=section)
    if operation in _IMAGE_PARAMETERS:
        request = _with(request, image_refs=_image_refs(operation, query))
    is_build = operation in build.OPERATIONS
    if not body_kind and not is_build:
        return request
    notes = Notes()
    match body_kind:
        case "":
            request = dataclasses.replace(request, build=build.build(operation, query, notes))
        case "container-create":
            request = _with(request, containers=(docker.container_create(body, notes),))
        case "container-start":
            request = _with(request, containers=docker.container_start(body, query, notes))
        case "container-update":
            request = _with(request, containers=(docker.container_update(body, notes),))
        case "exec-create" | "libpod-exec-create":
            request = _with(request, exec=docker.exec_create(body, notes))
        case "volume-create":
            request = _with(request, volume=docker.volume_create(body, notes))
        case "network-create":
            docker.network_create(body, notes)
        case "network-connect":
            docker.network_connect(body, notes)
        case "service":
            containers, plugin = docker.service(body, notes)
            request = _with(request, containers=containers, plugin=plugin)
        case "plugin":
            request = _with(request, plugin=docker.plugin(body, notes))
        case "libpod-container-create":
            request = _with(request, containers=(libpod.container_create(body, notes),))
        case "libpod-pod-create":
            request = _with(request, containers=(libpod.pod_create(body, notes),))
        case "libpod-volume-create":
            request = _with(request, volume=libpod.volume_create(body, notes))
        case "libpod-kube":
            played = kube.play(query, body, notes)
            request = _with(request, containers=played.containers, volume=played.volume)
        case _:
            raise ValueError(f"unknown body kind {body_kind!r} for {operation}")
    if body_kind and is_build:  # a build endpoint with a body kind still has its query
        request = dataclasses.replace(request, build=build.build(operation, query, notes))
    return dataclasses.replace(request, notes=notes.items())


# Query parameters that name an image source or destination, per operation
# (moby's and Podman's image handlers; libpod push takes "destination").
_IMAGE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "image.pull": ("fromImage", "reference"),
    # libpod builds hand the first tag to buildah as the commit destination
    # unchanged (compat/images_build.go: NormalizeToDockerHub returns libpod names
    # as given; buildah Executor.resolveNameToImageRef tries
    # alltransports.ParseImageName first), so "t=oci-archive:/root/x" writes an
    # archive to that host path. "from" replaces the base image the same way.
    "build.image": ("t", "from"),
    "image.import": ("fromSrc", "url", "reference"),
    "image.push": ("destination",),
    "image.tag": ("repo",),
    "image.commit": ("repo",),
    "manifest.push": ("destination",),
    "manifest.create": ("images",),
}


def _image_refs(operation: str, query: str) -> tuple[tuple[str, str], ...]:
    parsed = Query(query)
    return tuple(
        (name, value)
        for name in _IMAGE_PARAMETERS[operation]
        for value in parsed.get_all(name)
        if value
    )


def _with(request: Request, **changes: object) -> Request:
    return dataclasses.replace(request, **changes)  # type: ignore[arg-type]
