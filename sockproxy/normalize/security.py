"""Security options in one spelling: ``key=value``.

``HostConfig.SecurityOpt`` (and Podman's pod ``security_opt``) are strings
that both engines split the same way: ``no-new-privileges`` and (Docker)
``writable-cgroups`` alone mean ``=true``, ``disable`` alone means
``label=disable``; otherwise the first ``=`` separates key and value, or, when
there is none, the first ``:`` (the deprecated colon form ``seccomp:unconfined``).
Docker: moby daemon/daemon_unix.go ``parseSecurityOpt``; Podman:
pkg/specgenutil/specgen.go ``FillOutSpecGen``.

Effects beyond the option itself, as Podman applies them:

* ``seccomp=PATH``: Podman reads the profile from that host path (Docker
  receives the profile's JSON text from the CLI instead);
* ``systempaths=unconfined``: Podman's alias of ``unmask=ALL``;
* ``unmask=P1:P2``: those paths are no longer masked.
"""

from __future__ import annotations

from sockproxy.normalize.draft import Draft

# Values of seccomp= that name no file.
_SECCOMP_KEYWORDS = frozenset({"", "unconfined", "builtin", "default", "runtime/default"})


def split(option: str) -> tuple[str, str]:
    """An option as the engines split it: (key, value)."""
    if option in ("no-new-privileges", "writable-cgroups"):
        return option, "true"
    if option == "disable":
        return "label", "disable"
    if "=" in option:
        key, _, value = option.partition("=")
    elif ":" in option:
        key, _, value = option.partition(":")
    else:
        return option, ""  # refused by the engines; kept as written
    return key, value


def apply(draft: Draft, option: str, origin: str) -> None:
    """Record one ``SecurityOpt`` string and what it does beyond itself."""
    key, value = split(option)
    draft.security_opt.append(f"{key}={value}" if value or key != option else option)
    if key == "seccomp":
        seccomp_profile(draft, value, origin)
    elif key == "systempaths" and value == "unconfined":
        draft.unmasked_paths.append("ALL")
        draft.masked_paths_override = True
    elif key == "unmask":
        unmask(draft, value)


def seccomp_profile(draft: Draft, value: str, origin: str) -> None:
    """A seccomp value that is neither a keyword nor a JSON profile is a host path Podman reads."""
    if value.strip() not in _SECCOMP_KEYWORDS and not value.lstrip().startswith("{"):
        draft.add_host_file(value, "seccomp-profile", origin)


def unmask(draft: Draft, value: str) -> None:
    """``unmask=ALL`` or ``unmask=/proc/kcore:/sys/firmware`` (Podman splits on ``:``)."""
    draft.unmasked_paths.extend(path for path in value.split(":") if path)
