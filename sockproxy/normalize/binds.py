"""The ``-v`` bind syntax ``[src:]dst[:opts]`` and the device syntax ``src[:dst[:perm]]``,
split exactly as the engines split them.

Binds (``HostConfig.Binds``, and Podman's compat ``Volumes`` keys):

* Docker: moby volume/mounts/linux_parser.go ``ParseMountRaw`` splits on
  ``:`` into at most 3 parts (``SplitN(raw, ":", 4)``, 4 parts refused); a
  source that ``path.IsAbs`` is a bind, anything else a named volume.
* Podman: pkg/specgen/volumes.go ``GenVolumeMounts`` splits on every ``:``
  (more than 3 parts refused); a source starting with ``/`` *or* ``.`` is a
  host path (``./x`` resolved against the service's working directory), any
  other source a named volume. Option ``O`` makes it an overlay whose lower
  layer is the host path, with ``upperdir=``/``workdir=`` host paths.

Both agree on the split, so one parse serves both; a source is taken as a
host path when either engine would take it so. Sources are kept raw
(relative, ``//``, ``..``) for the path checker.

Devices (Podman's compat ``HostConfig.Devices`` strings, libpod
``devices[].path``, pod ``pod_devices``): pkg/util ``ParseDevice``.
"""

from __future__ import annotations

from sockproxy.jsonread import InvalidBody
from sockproxy.model import Device, Mount

_DEVICE_MODES = frozenset("rwm")


def is_host_path(source: str) -> bool:
    """Whether an engine reads this ``-v`` source as a host path, not a volume name."""
    return source.startswith(("/", "."))


def parse_bind(raw: str, origin: str, volume_driver: str = "") -> Mount:
    """One ``-v`` string as a Mount (a bind, a named volume, or an anonymous volume)."""
    parts = raw.split(":")
    if not raw or len(parts) > 3:
        raise InvalidBody(f"invalid bind {raw!r} in {origin}: expected [source:]target[:options]")
    if len(parts) == 1:
        return Mount("volume", "", parts[0], False, (), origin, volume_driver=volume_driver)
    source, target = parts[0], parts[1]
    options = tuple(o for o in parts[2].split(",") if o) if len(parts) == 3 else ()
    read_only = "ro" in options and "rw" not in options
    if is_host_path(source):
        return Mount("bind", source, target, read_only, options, origin)
    return Mount("volume", source, target, read_only, options, origin, volume_driver=volume_driver)


def parse_device(raw: str, origin: str) -> Device:
    """``/dev/sda``, ``/dev/sda:/dev/xvda``, ``/dev/sda:rw`` or ``/dev/sda:/dev/xvda:rwm``."""
    parts = raw.split(":")
    if not raw or len(parts) > 3:
        raise InvalidBody(f"invalid device {raw!r} in {origin}: expected source[:target[:mode]]")
    source, target, permissions = parts[0], "", "rwm"
    if len(parts) == 3:
        target, permissions = parts[1], parts[2]
    elif len(parts) == 2:
        if parts[1] and set(parts[1]) <= _DEVICE_MODES:
            permissions = parts[1]
        else:
            target = parts[1]
    return Device(source, target or source, permissions, origin)
