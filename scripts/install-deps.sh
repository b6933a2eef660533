#!/usr/bin/env bash
# Install the real engines and tools sockproxy's e2e tests and benchmarks drive:
# Podman 4.3 + runc, Docker Engine 20.10 (dockerd), static busybox (test images),
# newuidmap/newgidmap (rootless Podman), Debian's docker-registry (distribution 2.8).
# Idempotent and quiet when everything is already present.
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"
PACKAGES=(podman runc docker.io busybox-static uidmap docker-registry)

missing=()
for cmd in podman runc dockerd newuidmap; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
# The image rootfs needs a *static* /bin/busybox (busybox-static; Debian's busybox is dynamic).
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
    missing+=(busybox-static)
fi

[ "${#missing[@]}" -eq 0 ] && exit 0

echo "install-deps: missing ${missing[*]}; installing ${PACKAGES[*]}" >&2
SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)
"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${PACKAGES[@]}"
