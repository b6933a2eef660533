"""Normalise stage, play kube: every container of every pod template in every document."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from sockproxy.jsonread import AmbiguousBody, InvalidBody
from sockproxy.model import (
    ContainerSpec,
    Device,
    HostFile,
    Mount,
    Namespace,
    NamespaceMode,
    Request,
)
from sockproxy.normalize import normalize

HOST = NamespaceMode.HOST


def _play(yaml_text: str, query: str = "") -> Request:
    return normalize("kube.play", "kube", "libpod-kube", query, yaml_text.encode())


def _only(request: Request, origin_suffix: str) -> ContainerSpec:
    (spec,) = [c for c in request.containers if c.origin.endswith(origin_suffix)]
    return spec


POD = """
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    run.oci.keep_original_groups: "1"
    seccomp.security.alpha.kubernetes.io/pod: unconfined
    bind-mount-options: /srv:z
spec:
  hostNetwork: true
  hostPID: true
  securityContext:
    runAsUser: 0
    sysctls:
    - name: kernel.msgmax
      value: "65536"
  initContainers:
  - name: init
    image: busybox
    securityContext:
      privileged: true
  containers:
  - name: app
    image: alpine
    securityContext:
      capabilities:
        add: [SYS_ADMIN, cap_net_raw]
      allowPrivilegeEscalation: false
      seLinuxOptions:
        type: spc_t
      procMount: Unmasked
    volumeMounts:
    - name: root
      mountPath: /host
    - name: sock
      mountPath: /var/run/docker.sock
      readOnly: true
    - name: srv
      mountPath: /srv:ro
      mountPropagation: Bidirectional
    - name: disk
      mountPath: /dev/xvda
    - name: data
      mountPath: /data
  volumes:
  - name: root
    hostPath:
      path: /
  - name: sock
    hostPath:
      path: /run/docker.sock
      type: Socket
  - name: srv
    hostPath:
      path: /srv
  - name: disk
    hostPath:
      path: /dev/sda
      type: BlockDevice
  - name: data
    persistentVolumeClaim:
      claimName: data
  - name: unused
    hostPath:
      path: /etc/cron.d/new
      type: DirectoryOrCreate
"""


def test_pod_containers() -> None:
    request = _play(POD)
    app = _only(request, "spec.containers[0]")
    assert app.origin == "Pod/web: spec.containers[0]"
    assert app.cap_add == ("SYS_ADMIN", "NET_RAW")
    assert app.security_opt == (
        "no-new-privileges=true",
        "label=type:spc_t",
        "seccomp=unconfined",
        "proc-mount=Unmasked",
    )
    assert app.unmasked_paths == ("/proc",)
    assert app.user == "0"
    assert app.sysctls == (("kernel.msgmax", "65536"),)
    assert app.namespaces == (
        Namespace("net", HOST, "host", "Pod/web: spec.hostNetwork"),
        Namespace("pid", HOST, "host", "Pod/web: spec.hostPID"),
    )
    assert app.annotations == (
        ("run.oci.keep_original_groups", "1"),
        ("seccomp.security.alpha.kubernetes.io/pod", "unconfined"),
        ("bind-mount-options", "/srv:z"),
    )
    volumes = "Pod/web: spec.volumes"
    assert app.mounts == (
        Mount("bind", "/", "/host", False, (), f"{volumes}[0].hostPath"),
        Mount(
            "bind",
            "/run/docker.sock",
            "/var/run/docker.sock",
            True,
            ("ro", "hostPath.type=Socket"),
            f"{volumes}[1].hostPath",
        ),
        Mount("bind", "/srv", "/srv", True, ("ro", "rshared", "z"), f"{volumes}[2].hostPath"),
        Mount("volume", "data", "/data", False, (), f"{volumes}[4].persistentVolumeClaim"),
    )
    assert app.devices == (Device("/dev/sda", "/dev/xvda", "rwm", f"{volumes}[3].hostPath"),)


def test_init_containers_are_containers_too() -> None:
    init = _only(_play(POD), "spec.initContainers[0]")
    assert init.privileged


def test_pod_level_spec_holds_namespaces_and_unmounted_host_paths() -> None:
    pod = _only(_play(POD), ": pod")
    assert pod.mounts == (
        Mount(
            "bind",
            "/etc/cron.d/new",
            "",
            False,
            ("hostPath.type=DirectoryOrCreate",),
            "Pod/web: spec.volumes[5].hostPath",
        ),
    )
    assert {n.kind for n in pod.namespaces} == {"net", "pid"}


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: dep
  annotations:
    container.seccomp.security.alpha.kubernetes.io/c: localhost/weak.json
spec:
  replicas: 2
  template:
    metadata:
      annotations:
        io.podman.annotations.privileged: "TRUE"
    spec:
      hostIPC: true
      containers:
      - name: c
        image: alpine
        securityContext:
          seccompProfile:
            type: Unconfined
          runAsGroup: 10
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: cj
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: j
            image: alpine
            securityContext:
              privileged: true
---
kind: DaemonSet
metadata: {name: ds}
spec:
  template:
    spec:
      hostUsers: false
      containers: [{name: d, image: alpine}]
"""


def test_workload_templates_in_every_document() -> None:
    request = _play(DEPLOYMENT)
    c = _only(request, "Deployment/dep: spec.template.spec.containers[0]")
    assert c.security_opt == ("seccomp=unconfined", "seccomp=localhost/weak.json")
    assert c.host_files == (HostFile("weak.json", "seccomp-profile", "annotations"),)
    assert c.user == "0:10"
    assert ("io.podman.annotations.privileged", "TRUE") in c.annotations
    assert Namespace("ipc", HOST, "host", "Deployment/dep: spec.template.spec.hostIPC") in (
        c.namespaces
    )
    job = _only(request, "CronJob/cj: spec.jobTemplate.spec.template.spec.containers[0]")
    assert job.privileged
    daemon = _only(request, "DaemonSet/ds: spec.template.spec.containers[0]")
    assert daemon.namespaces == (
        Namespace(
            "user", NamespaceMode.OTHER, "auto", "DaemonSet/ds: spec.template.spec.hostUsers"
        ),
    )


PVC = """
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: c
    image: alpine
    volumeMounts: [{name: v, mountPath: /v}]
  volumes:
  - name: v
    persistentVolumeClaim: {claimName: etc}
---
kind: PersistentVolumeClaim
metadata:
  name: etc
  annotations:
    volume.podman.io/device: /etc
    volume.podman.io/type: bind
"""


def test_claims_that_bind_host_paths() -> None:
    """Podman creates claims before pods, wherever they are in the YAML."""
    request = _play(PVC)
    assert request.volume is not None
    assert (request.volume.name, request.volume.bind_source) == ("etc", "/etc")
    c = _only(request, "spec.containers[0]")
    assert c.mounts == (
        Mount(
            "bind",
            "/etc",
            "/v",
            False,
            ("volume=etc",),
            "Pod/p: spec.volumes[0].persistentVolumeClaim",
            "",
            (("device", "/etc"), ("type", "bind")),
        ),
    )
    claims = _only(request, "PersistentVolumeClaims")
    assert [m.source for m in claims.mounts] == ["/etc"]


def test_query_options_apply_to_every_container() -> None:
    query = "&".join(
        [
            "network=host",
            "logOptions=path%3D%2Fetc%2Fshadow",
            "annotations=" + quote(json.dumps({"run.oci.hooks": "x"})),
        ]
    )
    request = _play("kind: Pod\nmetadata: {name: q}\nspec:\n  containers: [{name: c}]\n", query)
    c = _only(request, "spec.containers[0]")
    assert Namespace("net", HOST, "host", "network") in c.namespaces
    assert c.host_files == (HostFile("/etc/shadow", "log-path", "logOptions"),)
    assert c.annotations == (("run.oci.hooks", "x"),)


def test_keys_are_matched_case_insensitively_as_encoding_json_does() -> None:
    text = (
        "kind: Pod\nmetadata: {name: c}\n"
        "spec:\n  Containers:\n  - name: c\n    SecurityContext: {PRIVILEGED: true}\n"
    )
    assert _only(_play(text), "spec.containers[0]").privileged


def test_other_kinds_are_noted() -> None:
    request = _play("kind: Service\nmetadata: {name: s}\n---\n---\nkind: ConfigMap\n")
    assert request.containers == ()
    assert "kind Service not played" in request.notes


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("kind: Pod\nkind: Pod\n", AmbiguousBody),  # yaml.v3 refuses duplicate keys
        (
            "kind: Pod\nspec: {containers: [{name: a, securityContext: "
            "{privileged: true, Privileged: false}}]}\n",
            AmbiguousBody,
        ),
        (
            "kind: Pod\nspec: {containers: [{name: a, securityContext: {privileged: maybe}}]}\n",
            InvalidBody,
        ),
        ("kind: [unclosed\n", InvalidBody),
        ("- just\n- a list\n", InvalidBody),
        (
            "kind: Pod\nspec: {volumes: [], containers: "
            "[{name: a, volumeMounts: [{name: x, mountPath: /x}]}]}\n",
            InvalidBody,
        ),
        ("a: !!python/object:os.system [id]\n", InvalidBody),
        ("a: &a [*a]\n", InvalidBody),
    ],
)
def test_refused_yaml(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        _play(text)


def test_alias_bomb_is_refused_before_it_expands() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    lines.append("kind: Pod")
    with pytest.raises(InvalidBody, match="nodes"):
        _play("\n".join(lines) + "\n")


def test_yaml_merge_keys_are_allowed() -> None:
    text = (
        "base: &b {privileged: true}\n"
        "kind: Pod\nmetadata: {name: m}\n"
        "spec:\n  containers:\n  - name: c\n    securityContext:\n      <<: *b\n"
    )
    assert _only(_play(text), "spec.containers[0]").privileged
