#!/usr/bin/env bash
# `make run`: sockproxy in front of this machine's engine, or in front of a
# private Podman service when no engine answers. Prints the DOCKER_HOST line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
STATE=${SOCKPROXY_RUN_DIR:-/tmp/sockproxy-$(id -u)}
POLICY=${POLICY:-policies/default.yaml}
LISTEN="$STATE/sockproxy.sock"
mkdir -p "$STATE"

# The first engine socket that answers, by sockproxy's own detection order.
UPSTREAM=$("$PY" - "$LISTEN" <<'PY' || true
import asyncio, os, sys
from sockproxy.upstream import AddressError, detect_upstream, probe
try:
    path = detect_upstream(os.environ, [sys.argv[1]])
    asyncio.run(probe(path, 3.0))
    print(path)
except Exception:
    sys.exit(1)
PY
)

ENGINE_PID=""
cleanup() { [ -n "$ENGINE_PID" ] && kill "$ENGINE_PID" 2>/dev/null && wait "$ENGINE_PID" 2>/dev/null; true; }
trap cleanup EXIT INT TERM

if [ -z "$UPSTREAM" ]; then
    echo "No running engine found; starting a private Podman service in $STATE/podman." >&2
    bash scripts/install-deps.sh
    coproc ENGINE { exec python3 scripts/engines.py start podman --dir "$STATE/podman"; }
    ENGINE_PID=$ENGINE_PID
    while read -r line <&"${ENGINE[0]}"; do
        case "$line" in SOCKET=*) UPSTREAM=${line#SOCKET=}; break ;; esac
    done
    [ -n "$UPSTREAM" ] || { echo "the private Podman service did not start" >&2; exit 1; }
fi

echo "sockproxy: forwarding to $UPSTREAM with policy $POLICY" >&2
echo "Use it with:" >&2
echo "    export DOCKER_HOST=unix://$LISTEN" >&2
"$PY" -m sockproxy serve --listen "unix://$LISTEN" --upstream "unix://$UPSTREAM" \
    --policy "$POLICY" --log-format console &
PROXY_PID=$!
trap 'kill -TERM $PROXY_PID 2>/dev/null; wait $PROXY_PID; cleanup' EXIT INT TERM
wait $PROXY_PID
