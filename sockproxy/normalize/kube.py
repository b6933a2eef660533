"""Normalise stage, ``POST /libpod/play/kube``: Kubernetes YAML as Podman plays it.

In: the query string and a YAML body of one or more documents. Out: one
ContainerSpec per container, init container and ephemeral container of every
pod template (``Pod``, ``Deployment``, ``DaemonSet``, ``ReplicaSet``,
``StatefulSet``, ``Job``, ``CronJob``), one for each pod's shared parts (its
namespaces, and hostPath volumes no container mounts: Podman creates
``DirectoryOrCreate``/``FileOrCreate`` paths anyway), and the volumes that
``PersistentVolumeClaim`` documents create.

How Podman 4.3 reads it (pkg/domain/infra/abi/play.go ``PlayKube``,
pkg/specgen/generate/kube): documents are split with yaml.v3 (duplicate
mapping keys refused) and each decoded with ghodss/yaml, i.e. converted to
JSON and read with ``encoding/json``, so struct fields match
case-insensitively, as ``jsonread`` reads them here. PVCs are created before
pods wherever they appear. Pod annotations (and the query's ``annotations``)
become every container's OCI annotations; the ``seccomp.security.alpha.
kubernetes.io`` annotations choose seccomp profiles; ``bind-mount-options``
adds relabel options to a bind. ``hostPID``/``hostIPC``/``procMount``/
``sysctls``/``seccompProfile`` are read too although 4.3 ignores some of them:
newer Podman versions do not, and a stricter reading costs nothing.

YAML is loaded with PyYAML's safe loader, duplicate keys refused, and the
document graph is measured before it is built, so an alias bomb is refused
(``InvalidBody``) instead of expanded.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from sockproxy import jsonread
from sockproxy.jsonread import AmbiguousBody, InvalidBody, JsonObject, JsonValue
from sockproxy.model import ContainerSpec, Device, Mount, NamespaceMode, VolumeSpec
from sockproxy.normalize import filesystems, namespaces
from sockproxy.normalize.draft import Draft
from sockproxy.normalize.fields import Fields, Notes
from sockproxy.normalize.query import Query

MAX_NODES = 1_000_000  # YAML nodes after alias expansion, over all documents

_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}

_PROPAGATION = {"None": "private", "HostToContainer": "rslave", "Bidirectional": "rshared"}
_DEVICE_TYPES = frozenset({"CharDevice", "BlockDevice"})

# PersistentVolumeClaim annotations Podman turns into volume options (pkg/util/kube.go).
_PVC_OPTIONS = {
    "volume.podman.io/device": "device",
    "volume.podman.io/type": "type",
    "volume.podman.io/mount-options": "o",
    "volume.podman.io/uid": "uid",
    "volume.podman.io/gid": "gid",
}
_PVC_DRIVER = "volume.podman.io/driver"
_SECCOMP_POD = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_CONTAINER = "container.seccomp.security.alpha.kubernetes.io/"
_APPARMOR_CONTAINER = "container.apparmor.security.beta.kubernetes.io/"
_BIND_MOUNT_OPTIONS = "bind-mount-options"  # libpod/define BindMountPrefix
_AUTOUPDATE_AUTHFILE = "io.containers.autoupdate.authfile"


@dataclass(frozen=True, slots=True)
class Played:
    containers: tuple[ContainerSpec, ...]
    volume: VolumeSpec | None


@dataclass(slots=True)
class _Play:
    """What applies to every pod: the query's options and the YAML's claims."""

    notes: Notes
    annotations: tuple[tuple[str, str], ...] = ()
    network: str = ""
    userns: str = ""
    log_paths: tuple[str, ...] = ()
    claims: dict[str, VolumeSpec] = field(default_factory=dict)


def play(raw_query: str, body: bytes | None, notes: Notes) -> Played:
    context = _read_query(Query(raw_query, podman_only=True), notes)
    documents = [Fields(obj, "", notes) for obj in _documents(body or b"")]
    labelled = [(_label(doc, i), doc) for i, doc in enumerate(documents)]
    containers: list[ContainerSpec] = []
    volumes: list[VolumeSpec] = []
    for label, doc in labelled:  # Podman creates claims before pods, wherever they are
        if doc.text("kind") == "PersistentVolumeClaim":
            volumes.append(_claim(_relabel(doc, label), context))
    claims_with_host = [v for v in volumes if v.bind_source]
    if claims_with_host:
        draft = Draft("play/kube PersistentVolumeClaims")
        for volume in claims_with_host:
            origin = f"PersistentVolumeClaim/{volume.name}: metadata.annotations"
            draft.mounts.append(_claim_mount(volume, "", False, (), origin))
        containers.append(draft.spec())
    for label, doc in labelled:
        kind = doc.text("kind")
        if kind in _TEMPLATE_PATHS:
            containers.extend(_workload(_relabel(doc, label), kind, label, context))
        elif kind != "PersistentVolumeClaim":
            notes.add(f"kind {kind or '(none)'} not played")
    chosen = claims_with_host[0] if claims_with_host else volumes[0] if volumes else None
    return Played(tuple(containers), chosen)


# -- YAML -----------------------------------------------------------------------------


# libyaml's parser when PyYAML was built with it: the same documents, much faster.
if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):
    """PyYAML's safe loader, refusing a mapping key given twice (as yaml.v3 does)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:
                continue  # unhashable: the safe constructor refuses it below
            if repeated:
                raise AmbiguousBody(f"ambiguous YAML: mapping key {str(key)[:64]!r} given twice")
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _documents(body: bytes) -> Iterator[JsonObject]:
    loader = _Loader(body)
    budget = [MAX_NODES]
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node() said there is one
            _measure(node, {}, set(), budget)
            value = loader.construct_document(node)
            if value is None:
                continue  # Podman skips empty documents
            converted = _to_json(value)
            if not isinstance(converted, JsonObject):
                raise InvalidBody("invalid kube YAML: a document is not a mapping")
            yield converted
    except yaml.YAMLError as exc:
        raise InvalidBody(f"invalid kube YAML: {_first_line(exc)}") from None
    except RecursionError:
        raise InvalidBody("invalid kube YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _measure(node: yaml.Node, sizes: dict[int, int], path: set[int], budget: list[int]) -> int:
    """Nodes under ``node`` with every alias expanded; refuses cycles and bombs."""
    key = id(node)
    if key in sizes:
        budget[0] -= sizes[key]
        if budget[0] < 0:
            raise InvalidBody(f"invalid kube YAML: more than {MAX_NODES} nodes once aliases expand")
        return sizes[key]
    if key in path:
        raise InvalidBody("invalid kube YAML: an alias refers to its own ancestor")
    path.add(key)
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidBody(f"invalid kube YAML: more than {MAX_NODES} nodes once aliases expand")
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_measure(child, sizes, path, budget) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            size += _measure(key_node, sizes, path, budget)
            size += _measure(value_node, sizes, path, budget)
    path.discard(key)
    sizes[key] = size
    return size


def _to_json(value: Any) -> JsonValue:
    """A YAML value as the JSON text ghodss/yaml would hand to encoding/json."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidBody("invalid kube YAML: .nan and .inf have no JSON form")
        return value
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        return JsonObject(tuple((_key(k), _to_json(v)) for k, v in value.items()))
    raise InvalidBody(f"invalid kube YAML: a {type(value).__name__} value has no JSON form")


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, str | int | float):
        return str(key)
    if isinstance(key, datetime.date):
        return key.isoformat()
    raise InvalidBody(f"invalid kube YAML: a {type(key).__name__} mapping key")


def _first_line(exc: yaml.YAMLError) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


# -- documents ------------------------------------------------------------------------


def _label(doc: Fields, index: int) -> str:
    kind = doc.text("kind") or "document"
    name = doc.child("metadata").text("name")
    return f"{kind}/{name}" if name else f"{kind}#{index}"


def _relabel(doc: Fields, label: str) -> Fields:
    return Fields(doc.obj, f"{label}: ", doc.notes)


def _read_query(query: Query, notes: Notes) -> _Play:
    context = _Play(notes)
    if raw := query.get("annotations"):
        notes.add("annotations")
        mapping = jsonread.as_object(jsonread.decode(raw.encode()), "annotations")
        context.annotations = jsonread.get_str_map(
            JsonObject((("annotations", mapping),)), "annotations", "annotations"
        )
    networks = query.get_all("network")
    if networks:
        notes.add("network")
        context.network = networks[0]
    if userns := query.get("userns") or "":
        notes.add("userns")
        context.userns = userns
    paths = []
    for option in query.get_all("logOptions"):
        key, _, value = option.partition("=")
        if key.lower() == "path":
            paths.append(value)
    context.log_paths = tuple(paths)
    if query.get("logDriver"):
        notes.add("logDriver")
    return context


def _claim(doc: Fields, context: _Play) -> VolumeSpec:
    meta = doc.child("metadata")
    name = meta.text("name")
    driver = ""
    options: list[tuple[str, str]] = []
    for key, value in meta.text_map("annotations"):
        if key == _PVC_DRIVER:
            driver = value
        elif key in _PVC_OPTIONS:
            options.append((_PVC_OPTIONS[key], value))
    origin = meta.origin("annotations")
    source = filesystems.volume_source(driver, options, origin)
    volume = VolumeSpec(name=name, driver=driver, options=tuple(options), bind_source=source)
    context.claims[name] = volume
    return volume


def _claim_mount(
    volume: VolumeSpec, target: str, read_only: bool, options: tuple[str, ...], origin: str
) -> Mount:
    if volume.bind_source:
        options = (*options, f"volume={volume.name}")
        kind, source = "bind", volume.bind_source
    else:
        kind, source = "volume", volume.name
    return Mount(
        kind, source, target, read_only, options, origin,
        volume_driver=volume.driver, volume_options=volume.options,
    )  # fmt: skip


def _workload(doc: Fields, kind: str, label: str, context: _Play) -> list[ContainerSpec]:
    template = doc
    annotations = list(doc.child("metadata").text_map("annotations"))
    for step in _TEMPLATE_PATHS[kind]:
        template = template.child(step)
    if template is not doc:
        annotations.extend(template.child("metadata").text_map("annotations"))
    annotations.extend(context.annotations)
    return _pod(template.child("spec"), label, tuple(annotations), context)


@dataclass(frozen=True, slots=True)
class _Pod:
    label: str
    spec: Fields
    annotations: tuple[tuple[str, str], ...]
    volumes: dict[str, Fields]
    context: _Play


def _pod(
    spec: Fields, label: str, annotations: tuple[tuple[str, str], ...], context: _Play
) -> list[ContainerSpec]:
    volumes: dict[str, Fields] = {}
    for volume in spec.children("volumes"):
        volumes[volume.text("name")] = volume
    pod = _Pod(label, spec, annotations, volumes, context)
    shared = Draft(f"{label}: pod")
    _pod_namespaces(pod, shared)
    containers = []
    mounted: set[str] = set()
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.children(group):
            containers.append(_container(pod, container, mounted))
    for name, volume in volumes.items():
        host_path = volume.child("hostPath")
        if name not in mounted and host_path.obj is not None:
            path = host_path.text("path")
            kind = host_path.text("type")
            options = (f"hostPath.type={kind}",) if kind else ()
            shared.mounts.append(Mount("bind", path, "", False, options, host_path.origin()))
    if shared.namespaces or shared.mounts:
        containers.insert(0, shared.spec())
    return containers


def _pod_namespaces(pod: _Pod, draft: Draft) -> None:
    spec = pod.spec
    for kind, name in (("net", "hostNetwork"), ("pid", "hostPID"), ("ipc", "hostIPC")):
        if spec.flag(name):
            draft.add_namespace(namespaces.from_text(kind, "host", spec.origin(name)))
    if spec.present("hostUsers"):
        mode = "host" if spec.flag("hostUsers") else "auto"
        draft.add_namespace(namespaces.from_text("user", mode, spec.origin("hostUsers")))
    if pod.context.network:
        namespace = namespaces.from_text("net", pod.context.network, "network")
        if namespace is not None and namespace.mode is not NamespaceMode.PRIVATE:
            draft.add_namespace(namespace)
    if pod.context.userns:
        draft.add_namespace(namespaces.from_text("user", pod.context.userns, "userns"))
    spec.flag("shareProcessNamespace")
    spec.values("hostAliases")


def _container(pod: _Pod, c: Fields, mounted: set[str]) -> ContainerSpec:
    name = c.text("name")
    draft = Draft(c.origin())
    draft.image = c.text("image")
    _pod_namespaces(pod, draft)
    sc, psc = c.child("securityContext"), pod.spec.child("securityContext")
    draft.privileged = sc.flag("privileged")
    capabilities = sc.child("capabilities")
    draft.add_caps(capabilities.texts("add"))
    draft.add_caps(capabilities.texts("drop"), drop=True)
    if sc.present("allowPrivilegeEscalation") and not sc.flag("allowPrivilegeEscalation"):
        draft.security_opt.append("no-new-privileges=true")
    selinux = (
        sc.child("seLinuxOptions") if sc.present("seLinuxOptions") else psc.child("seLinuxOptions")
    )
    for part in ("user", "role", "type", "level"):
        if value := selinux.text(part):
            draft.security_opt.append(f"label={part}:{value}")
    profile = (
        sc.child("seccompProfile") if sc.present("seccompProfile") else psc.child("seccompProfile")
    )
    _seccomp_profile(profile, draft)
    _seccomp_annotations(pod, name, draft)
    _apparmor(sc, pod, name, draft)
    if sc.text("procMount") == "Unmasked":
        draft.unmasked_paths.append("/proc")
        draft.security_opt.append("proc-mount=Unmasked")
    draft.user = _user(sc, psc)
    for sysctl in psc.children("sysctls"):
        draft.sysctls.append((sysctl.text("name"), sysctl.text("value")))
    draft.annotations.extend(pod.annotations)
    for key, value in pod.annotations:
        if key in (_AUTOUPDATE_AUTHFILE, f"{_AUTOUPDATE_AUTHFILE}/{name}"):
            draft.add_host_file(value, "autoupdate-authfile", f"metadata.annotations[{key!r}]")
    for path in pod.context.log_paths:
        draft.add_host_file(path, "log-path", "logOptions")
    for volume_mount in c.children("volumeMounts"):
        _volume_mount(pod, volume_mount, draft, mounted)
    for name_ in ("volumeDevices", "ports", "envFrom"):
        c.values(name_)
    return draft.spec()


def _user(sc: Fields, psc: Fields) -> str:
    """runAsUser / runAsGroup as Podman writes them (kube.go ``setupSecurityContext``)."""
    user = ""
    for context in (sc, psc):
        if context.present("runAsUser"):
            user = str(context.number("runAsUser"))
            break
    for context in (sc, psc):
        if context.present("runAsGroup"):
            return f"{user or '0'}:{context.number('runAsGroup')}"
    return user


def _seccomp_profile(profile: Fields, draft: Draft) -> None:
    kind = profile.text("type")
    if kind == "Unconfined":
        draft.security_opt.append("seccomp=unconfined")
    elif kind == "Localhost":
        path = profile.text("localhostProfile")
        draft.security_opt.append(f"seccomp=localhost/{path}")
        draft.add_host_file(path, "seccomp-profile", profile.origin("localhostProfile"))


def _seccomp_annotations(pod: _Pod, name: str, draft: Draft) -> None:
    """kube/seccomp.go: the container's annotation, else the pod's."""
    chosen = ""
    for key, value in pod.annotations:
        if key == f"{_SECCOMP_CONTAINER}{name}" or (key == _SECCOMP_POD and not chosen):
            chosen = value
    if chosen == "unconfined":
        draft.security_opt.append("seccomp=unconfined")
    elif chosen.startswith("localhost/"):
        draft.security_opt.append(f"seccomp={chosen}")
        draft.add_host_file(chosen.removeprefix("localhost/"), "seccomp-profile", "annotations")


def _apparmor(sc: Fields, pod: _Pod, name: str, draft: Draft) -> None:
    profile = sc.child("appArmorProfile")
    kind = profile.text("type")
    if kind == "Unconfined":
        draft.security_opt.append("apparmor=unconfined")
    elif kind == "Localhost":
        draft.security_opt.append(f"apparmor={profile.text('localhostProfile')}")
    for key, value in pod.annotations:
        if key == f"{_APPARMOR_CONTAINER}{name}" and value and value != "runtime/default":
            draft.security_opt.append(f"apparmor={value.removeprefix('localhost/')}")


def _volume_mount(pod: _Pod, m: Fields, draft: Draft, mounted: set[str]) -> None:
    name = m.text("name")
    volume = pod.volumes.get(name)
    if volume is None:
        raise InvalidBody(f"invalid kube YAML: {m.origin('name')} names no volume of the pod")
    mounted.add(name)
    target, _, raw_options = m.text("mountPath").partition(":")
    options = [o for o in raw_options.split(",") if o]
    read_only = m.flag("readOnly") or "ro" in options
    if m.flag("readOnly"):
        options.append("ro")
    if propagation := m.text("mountPropagation"):
        options.append(_PROPAGATION.get(propagation, propagation))
    if sub_path := m.text("subPath"):
        options.append(f"subpath={sub_path}")
    host_path = volume.child("hostPath")
    if host_path.obj is not None:
        path, kind = host_path.text("path"), host_path.text("type")
        origin = host_path.origin()
        if kind in _DEVICE_TYPES:
            draft.devices.append(Device(path, target, "rwm", origin))
            return
        if kind:
            options.append(f"hostPath.type={kind}")
            pod.spec.notes.add(f"hostPath.type {kind}")
        for key, value in pod.annotations:
            # "bind-mount-options": "/host/path:z" relabels that host path.
            source, _, option = value.rpartition(":")
            if key == _BIND_MOUNT_OPTIONS and source == path and option:
                options.append(option)
        draft.mounts.append(Mount("bind", path, target, read_only, tuple(options), origin))
        return
    claim = volume.child("persistentVolumeClaim")
    if claim.obj is not None:
        claim_name = claim.text("claimName")
        known = pod.context.claims.get(claim_name, VolumeSpec(name=claim_name))
        origin = claim.origin()
        draft.mounts.append(_claim_mount(known, target, read_only, tuple(options), origin))
        return
    for source_kind in ("configMap", "secret", "emptyDir"):
        content = volume.child(source_kind)
        if content.obj is not None:
            label = content.text("name") or content.text("secretName") or name
            mount = Mount("volume", label, target, read_only, tuple(options), content.origin())
            draft.mounts.append(mount)
            return
    # Podman 4.3 refuses every other volume source; keep it visible anyway.
    draft.mounts.append(Mount("other", name, target, read_only, tuple(options), volume.origin()))
