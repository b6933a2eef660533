"""Normalise stage, image builds: the query parameters whose build steps reach the host.

In: ``POST /build`` (or libpod ``/build``) query string. Out: a ``BuildSpec``
whose ``options`` hold only parameters that reach the host, so every one of
them is worth a refusal by default.

Podman serves both flavours with one handler (pkg/api/handlers/compat/
images_build.go ``BuildImage``, 4.3): without an ``nsoptions`` parameter it
appends ``{Name: "network", Host: true}``, so RUN steps share the host's
network namespace unless the client asks otherwise; ``remote`` (libpod) and
``dockerfile`` given as a JSON list name paths on the server; ``secrets``
``src=`` is joined to the context directory and may climb out of it;
``rusagelogfile`` is written on the server. Docker reads ``networkmode``
(``host``) and ``isolation`` (moby api/server/router/build ``newImageBuildOptions``).
Every parameter is read with the same ambiguity rules as the engines' decoders
(``query``). Form-encoded bodies are not seen here (Docker's ``r.FormValue``
also reads an ``application/x-www-form-urlencoded`` body): the classify or
frame stage must refuse them on build requests.
"""

from __future__ import annotations

import posixpath
import re

from sockproxy import jsonread
from sockproxy.jsonread import JsonValue
from sockproxy.model import PODMAN_DEFAULT_NETWORK, BuildSpec
from sockproxy.normalize import caps, security
from sockproxy.normalize.fields import Fields, Notes, strings
from sockproxy.normalize.query import Query

# buildah define.TempDirForURL: anything else is a directory on the server.
_URL_PREFIXES = ("http://", "https://", "git://", "github.com/")

# The operations normalised here: the build itself (POST /build in either
# flavour), and BuildKit's session and gRPC hijacks, whose entitlements
# (network.host, security.insecure) travel inside gRPC where no proxy reads them.
# Build cache prune and cancel take nothing that reaches the host.
_IMAGE_BUILDS = frozenset({"build.image", "image.build"})
_SESSION_OPERATIONS = frozenset({"build.session", "build.grpc"})
OPERATIONS = _IMAGE_BUILDS | _SESSION_OPERATIONS


def build(operation: str, raw_query: str, notes: Notes) -> BuildSpec:
    if operation in _SESSION_OPERATIONS:
        notes.add("BuildKit session: entitlements are inside gRPC, not seen")
        return BuildSpec()
    query = Query(raw_query)
    options: list[tuple[str, str]] = []
    network_mode = query.get("networkmode") or ""
    isolation = query.get("isolation") or ""
    for name in ("networkmode", "isolation"):
        if query.get(name):
            notes.add(name)
    if _is_chroot(isolation):  # libpod: RUN steps without their own namespaces
        options.append(("isolation", isolation))

    namespace_network = _namespace_options(query, options, notes)
    if network_mode == "host" or namespace_network == "host":
        network_mode = "host"
    elif namespace_network:
        network_mode = namespace_network
    elif namespace_network is None:
        network_mode = PODMAN_DEFAULT_NETWORK

    for cap in _json_strings(query, "addcaps", notes):
        options.append(("addcaps", caps.normalize(cap)))
    for name in ("devices", "volume", "labelopts"):
        options.extend((name, value) for value in _json_strings(query, name, notes))
    for option in _json_strings(query, "securityopt", notes):
        key, value = security.split(option)
        options.append(("securityopt", f"{key}={value}"))
    for secret in _json_strings(query, "secrets", notes):
        if _secret_escapes(secret):
            options.append(("secrets", secret))
    for name in ("seccomp", "apparmor", "cgroupparent", "rusagelogfile"):
        if given := query.get(name):
            notes.add(name)
            options.append((name, given))
    remote = query.get("remote") or ""
    if remote and remote != "-" and not remote.startswith(_URL_PREFIXES):
        notes.add("remote")
        options.append(("remote", remote))
    options.extend(("dockerfile", path) for path in _dockerfiles(query, notes))
    options.extend(_build_contexts(query, notes))
    for name in ("extrahosts", "httpproxy", "idmappingoptions", "outputs", "cgroupns"):
        if query.get(name):
            notes.add(name)
    return BuildSpec(network_mode=network_mode, isolation=isolation, options=tuple(options))


# buildah define.Isolation values: IsolationDefault 0, IsolationOCI 1,
# IsolationChroot 2, IsolationOCIRootless 3.
_GO_ATOI = re.compile(r"[+-]?[0-9]+")
_ISOLATIONS_NOT_CHROOT = frozenset({0, 1, 3})


def _is_chroot(isolation: str) -> bool:
    """Whether libpod's build handler could read ``isolation`` as chroot.

    Podman 4.3 ``parseLibPodIsolation`` (compat/images_build.go) tries
    ``strconv.Atoi`` first, so ``2``, ``+2`` and ``02`` are ``IsolationChroot``
    (and any other number is a value sockproxy cannot place); otherwise buildah
    ``parse.IsolationOption`` lower-cases the name, so ``CHROOT`` is chroot too.
    Docker's ``hyperv``/``process`` are refused by the engines and stay notes.
    """
    if _GO_ATOI.fullmatch(isolation):
        # Longer than any int64: Atoi fails and buildah refuses the name.
        return len(isolation) > 20 or int(isolation) not in _ISOLATIONS_NOT_CHROOT
    return isolation.lower() == "chroot"


def _namespace_options(query: Query, options: list[tuple[str, str]], notes: Notes) -> str | None:
    """``nsoptions``: ``[{"Name": "network", "Host": true, "Path": ""}]``. Returns the
    network namespace it asks for ("host", "ns:PATH" or ""), None when absent."""
    raw = query.get("nsoptions")
    if raw is None:
        return None
    notes.add("nsoptions")
    if not raw:
        return ""
    network = ""
    for i, item in enumerate(_json_list(raw, "nsoptions")):
        fields = Fields(jsonread.as_object(item, f"nsoptions[{i}]"), f"nsoptions[{i}].", notes)
        name, host, path = fields.text("Name"), fields.flag("Host"), fields.text("Path")
        if name in ("network", "net"):
            network = "host" if host else f"ns:{path}" if path else network
        elif name == "user" and host and not path:
            # The host's user namespace is no user namespace at all: what every
            # rootful container gets, and what podman --remote sends on each build.
            continue
        elif host or path:
            options.append(("nsoptions", f"{name}={'host' if host else path}"))
    return network


def _json_list(raw: str, name: str) -> list[JsonValue]:
    value = jsonread.decode(raw.encode())
    if value is None:
        return []
    if not isinstance(value, list):
        raise jsonread.InvalidBody(f"invalid query: {name} must be a JSON array")
    return value


def _json_strings(query: Query, name: str, notes: Notes) -> tuple[str, ...]:
    raw = query.get(name)
    if not raw:
        return ()
    notes.add(name)
    return tuple(s for s in strings(_json_list(raw, name), name) if s)


def _secret_escapes(secret: str) -> bool:
    """Podman joins ``src=`` to the context directory and renames the file: a
    ``..`` climbs out to the host. An absolute source is kept as suspicious too."""
    for token in secret.split(","):
        key, _, value = token.partition("=")
        if key in ("src", "source") and (value.startswith("/") or ".." in value.split("/")):
            return True
    return False


def _dockerfiles(query: Query, notes: Notes) -> list[str]:
    """``dockerfile`` as a JSON list is used as given (buildah joins relative
    entries to the context); a plain name is joined to the context."""
    raw = query.get("dockerfile")
    if not raw:
        return []
    notes.add("dockerfile")
    try:
        value = jsonread.decode(raw.encode())
    except jsonread.InvalidBody:
        value = raw
    paths = list(strings(value, "dockerfile")) if isinstance(value, list) else [raw]
    return [p for p in paths if p.startswith("/") or posixpath.normpath(p).startswith("..")]


def _build_contexts(query: Query, notes: Notes) -> list[tuple[str, str]]:
    """``additionalbuildcontexts``: ``{name: {IsURL, IsImage, Value}}``; a local
    value is a directory on the server."""
    raw = query.get("additionalbuildcontexts")
    if not raw:
        return []
    notes.add("additionalbuildcontexts")
    mapping = jsonread.as_object(jsonread.decode(raw.encode()), "additionalbuildcontexts")
    found = []
    for name, item in mapping.entries():
        origin = f'additionalbuildcontexts["{name}"]'
        fields = Fields(jsonread.as_object(item, origin), f"{origin}.", notes)
        if not fields.flag("IsURL") and not fields.flag("IsImage"):
            found.append(("additionalbuildcontexts", f"{name}={fields.text('Value')}"))
    return found
