"""What a mount of a filesystem type reaches on the host.

Two roads let a client choose a filesystem type and source themselves:

* libpod ``mounts`` are OCI mounts passed to the runtime nearly as written
  (pkg/specgen/generate/storage.go ``finalizeMounts``): type ``bind``, but
  also ``sysfs``, ``proc``, ``overlay``, a block device with ``ext4``...
* volumes of the ``local`` driver with ``type``/``o``/``device`` options:
  Docker mounts ``device`` on the volume directory with mount(2) (moby
  volume/local/local_unix.go), Podman runs mount(8) (libpod/
  volume_internal_common.go ``mount``), which also resolves ``LABEL=`` and
  detects the type of a device when ``type`` is empty.

A fresh mount of a kernel pseudo-filesystem from the engine's namespaces
shows what the host shows at its usual mount point (a writable ``sysfs``
reaches ``/sys/kernel/uevent_helper``, ``proc`` reaches
``/proc/sys/kernel/core_pattern``), so it is reported as a bind of that
path. ``overlay`` is reported as a bind of the deepest directory holding all
of its ``lowerdir``/``upperdir``/``workdir`` paths. Unknown types are binds of
their source (a block device or an image file), raw.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence

from sockproxy.jsonread import AmbiguousBody

# Where the host shows each pseudo-filesystem.
_PSEUDO = {
    "proc": "/proc",
    "sysfs": "/sys",
    "cgroup": "/sys/fs/cgroup",
    "cgroup2": "/sys/fs/cgroup",
    "debugfs": "/sys/kernel/debug",
    "tracefs": "/sys/kernel/tracing",
    "securityfs": "/sys/kernel/security",
    "bpf": "/sys/fs/bpf",
    "configfs": "/sys/kernel/config",
    "fusectl": "/sys/fs/fuse/connections",
    "pstore": "/sys/fs/pstore",
    "efivarfs": "/sys/firmware/efi/efivars",
    "binfmt_misc": "/proc/sys/fs/binfmt_misc",
    "devtmpfs": "/dev",
    "hugetlbfs": "/dev/hugepages",
    "rpc_pipefs": "/run/rpc_pipefs",
}
_MEMORY = frozenset({"tmpfs", "ramfs"})
_NETWORK = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.sshfs", "sshfs", "davfs"}
)
_OVERLAY_PATHS = ("lowerdir", "upperdir", "workdir")


def classify(fstype: str, source: str, options: Sequence[str], origin: str) -> tuple[str, str]:
    """(Mount.kind, Mount.source) for a mount of ``source`` with type and options."""
    if fstype in ("bind", "rbind") or any(o in ("bind", "rbind") for o in options):
        return "bind", source
    if fstype in _MEMORY:
        return "tmpfs", source
    if fstype in ("devpts", "glob", "image", "volume"):
        return fstype, source
    if fstype == "mqueue" or fstype in _NETWORK:
        return "other", source
    if fstype in _PSEUDO:
        return "bind", _PSEUDO[fstype]
    if fstype in ("overlay", "fuse-overlayfs"):
        paths = _overlay_paths(options)
        if not paths:
            return "other", source
        return "bind", _common_dir(paths, origin)
    return "bind", source  # a block device, an image file, or a type the runtime refuses


def volume_source(driver: str, options: Iterable[tuple[str, str]], origin: str) -> str:
    """The host path a volume with these driver options mounts; "" when none.

    Keys are read case-insensitively (Podman lower-cases them when it
    validates, moby refuses other spellings), a key given in two spellings
    is ambiguous. Only the ``local`` driver is known; other drivers are
    plugins and are judged when they are installed.
    """
    if driver not in ("", "local"):
        return ""
    opts: dict[str, str] = {}
    for key, value in options:
        lowered = key.lower()
        if lowered in opts:
            raise AmbiguousBody(f"ambiguous volume options in {origin}: {lowered!r} given twice")
        opts[lowered] = value
    fstype, device = opts.get("type", ""), opts.get("device", "")
    mount_options = [o for o in opts.get("o", "").split(",") if o]
    if not fstype:
        # mount(8) detects the type of a device (Podman); mount(2) refuses (Docker).
        if any(o in ("bind", "rbind") for o in mount_options) or device:
            return device
        return ""
    kind, source = classify(fstype, device, mount_options, origin)
    return source if kind in ("bind", "glob") else ""


def _overlay_paths(options: Sequence[str]) -> list[str]:
    paths: list[str] = []
    for option in options:
        key, _, value = option.partition("=")
        if key in _OVERLAY_PATHS and value:
            paths.extend(p for p in value.split(":") if p)
    return paths


def _common_dir(paths: list[str], origin: str) -> str:
    if not all(p.startswith("/") for p in paths):
        raise AmbiguousBody(
            f"ambiguous overlay in {origin}: relative lowerdir/upperdir/workdir paths depend "
            "on the engine's working directory"
        )
    return posixpath.commonpath(paths)
