#!/usr/bin/env python3
"""Benchmark the policy: decision cost per container create, and allowed creates/s.

    .venv/bin/python bench/policy.py [--engine podman|docker] [--quick] [--no-engine]

Part 1, in this process, no engine: for a few real request bodies (what the
Docker CLI 28 and `podman --remote` send), the median time of each stage the
proxy runs before forwarding a request with a body: classify (memoised: cold
and warm), JSON/YAML decode + normalise, and evaluate against
policies/default.yaml.

Part 2, against a real engine (scripts/engines.py): sockproxy with
--policy policies/default.yaml in front of it, and N create + delete cycles on
each socket, interleaved (bare, proxy, proxy, bare, ...), each on one keep-alive
connection: creates/s and create latency per side, and the ratio. Every create
through the proxy must get 201, and a --privileged one 403 (rule no-privileged).

Prints two tables and writes bench/out/policy.json. Everything it starts lives
in a new /tmp/sbp-XXXXXXXX/ and is stopped by PID. Standard library, the sockproxy
package, bench/run.py and scripts/engines.py only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
# this working tree's sockproxy, bench/run.py and scripts/engines.py
sys.path[:0] = [REPO, BENCH, os.path.join(REPO, "scripts")]

import engines  # noqa: E402  (scripts/engines.py)
import run as harness  # noqa: E402  (bench/run.py: proxy start, machine info)

from sockproxy.checks import Context  # noqa: E402
from sockproxy.normalize import normalize  # noqa: E402
from sockproxy.policy import Decision, Policy, evaluate, load_policy  # noqa: E402
from sockproxy.routes import Route, classify  # noqa: E402

POLICY = os.path.join(REPO, "policies", "default.yaml")
IMAGE = engines.BUSYBOX_IMAGE
API = "/v1.41"  # what the Docker CLI negotiates with Podman 4.3 and Docker 20.10
# Sockets a served policy knows as its own (`sockproxy serve` passes its listeners
# and upstream): the engine-socket check looks for them in every bind.
OWN_SOCKETS = ("/run/sockproxy.sock", "/run/podman/podman.sock")

log = harness.log


# --------------------------------------------------------------------------- bodies


def cli_create(env: list[str] | None, cmd: list[str], binds: list[str], privileged: bool) -> bytes:
    """The body of POST /v1.41/containers/create from `docker run --rm [OPTIONS] IMAGE CMD`,
    byte for byte as Docker CLI 28.2.2 sends it (recorded on a socket playing an API 1.41
    engine; Go writes struct fields in this order, and nothing here needs its HTML
    escaping)."""
    host_config: dict[str, Any] = {
        "Binds": binds,
        "ContainerIDFile": "",
        "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": "default",
        "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": True,
        "VolumeDriver": "",
        "VolumesFrom": None,
        "ConsoleSize": [0, 0],
        "CapAdd": None,
        "CapDrop": None,
        "CgroupnsMode": "",
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": None,
        "GroupAdd": None,
        "IpcMode": "",
        "Cgroup": "",
        "Links": None,
        "OomScoreAdj": 0,
        "PidMode": "",
        "Privileged": privileged,
        "PublishAllPorts": False,
        "ReadonlyRootfs": False,
        "SecurityOpt": None,
        "UTSMode": "",
        "UsernsMode": "",
        "ShmSize": 0,
        "Isolation": "",
        "CpuShares": 0,
        "Memory": 0,
        "NanoCpus": 0,
        "CgroupParent": "",
        "BlkioWeight": 0,
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [],
        **dict.fromkeys(("CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime"), 0),
        "CpusetCpus": "",
        "CpusetMems": "",
        "Devices": [],
        "DeviceCgroupRules": None,
        "DeviceRequests": None,
        "MemoryReservation": 0,
        "MemorySwap": 0,
        "MemorySwappiness": -1,
        "OomKillDisable": False,
        "PidsLimit": 0,
        "Ulimits": [],
        **dict.fromkeys(("CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth"), 0),
        "MaskedPaths": None,
        "ReadonlyPaths": None,
    }
    endpoint: dict[str, Any] = {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": None,
        "MacAddress": "",
        "DriverOpts": None,
        "GwPriority": 0,
        "NetworkID": "",
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": None,
    }
    body = {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": env,
        "Cmd": cmd,
        "Image": IMAGE,
        "Volumes": {},
        "WorkingDir": "",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": {},
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": {"default": endpoint}},
    }
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"  # json.Encoder's newline


# `docker run --rm -v data:/data -v /tmp/x:/x -e A=1 IMAGE sh -c 'echo hello; sleep 1'`
RUN_ARGS = ["-v", "data:/data", "-v", "/tmp/x:/x", "-e", "A=1"]
RUN_CMD = ["sh", "-c", "echo hello; sleep 1"]
CLI_RUN = cli_create(["A=1"], RUN_CMD, ["data:/data", "/tmp/x:/x"], False)
# `docker run --rm --privileged -v /:/host IMAGE sh -c 'ls /host'`
PRIV_ARGS = ["--privileged", "-v", "/:/host"]
PRIV_CMD = ["sh", "-c", "ls /host"]
CLI_PRIVILEGED = cli_create(None, PRIV_CMD, ["/:/host"], True)

# POST /v4.3.1/libpod/containers/create from `podman --remote create --rm -v data:/data
# -v /tmp/x:/x -e A=1 IMAGE sh -c 'echo hello; sleep 1'` (Podman 4.3.1, captured through
# a recording relay; only the --url argument is left out of containerCreateCommand).
LIBPOD_CREATE = json.dumps(
    {
        "command": RUN_CMD,
        "httpproxy": True,
        "env": {"A": "1"},
        "annotations": {"io.kubernetes.cri-o.TTY": "false"},
        "stop_timeout": 10,
        "log_configuration": {},
        "raw_image_name": IMAGE,
        "systemd": "true",
        "sdnotifyMode": "container",
        "pidns": {},
        "utsns": {},
        "remove": True,
        "containerCreateCommand": [
            *("podman", "--remote", "create", "--rm", *RUN_ARGS, IMAGE, *RUN_CMD)
        ],
        "init_container_type": "",
        "manage_password": True,
        "image": IMAGE,
        "image_volume_mode": "anonymous",
        "mounts": [{"destination": "/x", "type": "bind", "source": "/tmp/x"}],
        "volumes": [{"Name": "data", "Dest": "/data", "Options": None, "IsAnonymous": False}],
        "ipcns": {},
        "volatile": True,
        "seccomp_policy": "default",
        "userns": {},
        "idmappings": {
            "HostUIDMapping": True,
            "HostGIDMapping": True,
            "UIDMap": None,
            "GIDMap": None,
            "AutoUserNs": False,
            "AutoUserNsOpts": {
                "Size": 0,
                "InitialSize": 0,
                "PasswdFile": "",
                "GroupFile": "",
                "AdditionalUIDMappings": None,
                "AdditionalGIDMappings": None,
            },
        },
        "umask": "0022",
        "cgroupns": {},
        "cgroups_mode": "enabled",
        "netns": {},
        "Networks": None,
        "use_image_hosts": False,
    },
    separators=(",", ":"),
).encode()

# `podman --remote kube play web.yaml` (4.3.1): the file is the body. Podman's client
# also sends `logdriver=`, which sockproxy refuses as ambiguous (400) before reading the
# YAML, so it is left out here to time the YAML itself.
KUBE_QUERY = (
    "authfile=&certdir=&nohosts=false&password=&quiet=false&seccompprofileroot="
    "&signaturepolicy=&start=true&username=&userns="
)
KUBE_YAML = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: app
    image: {IMAGE}
    command: [sh, -c, "httpd -f -p 8080 -h /www"]
    env:
    - name: MODE
      value: production
    ports:
    - containerPort: 8080
    securityContext:
      capabilities:
        drop: [ALL]
        add: [NET_BIND_SERVICE]
    volumeMounts:
    - name: www
      mountPath: /www
      readOnly: true
    - name: data
      mountPath: /data
  - name: sidecar
    image: {IMAGE}
    command: [sh, -c, "while true; do date >> /data/log; sleep 60; done"]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: www
    hostPath:
      path: /srv/www
      type: Directory
  - name: data
    persistentVolumeClaim:
      claimName: web-data
""".encode()


@dataclass
class Case:
    name: str
    what: str
    method: str
    target: str
    body: bytes
    policy: str = "default"  # "default" | "default+kube"


def cases(cli_run: bytes, cli_privileged: bytes) -> list[Case]:
    create = f"{API}/containers/create"
    libpod = "/v4.3.1/libpod/containers/create"
    kube = f"/v4.3.1/libpod/play/kube?{KUBE_QUERY}"
    run, priv = " ".join(RUN_ARGS), " ".join(PRIV_ARGS)
    kube_what = "podman --remote kube play (Pod, 2 containers)"
    return [
        Case("docker-run", f"docker run --rm {run}", "POST", create, cli_run),
        Case("docker-run-privileged", f"docker run --rm {priv}", "POST", create, cli_privileged),
        Case("libpod-create", f"podman --remote create --rm {run}", "POST", libpod, LIBPOD_CREATE),
        Case("kube-play", kube_what, "POST", kube, KUBE_YAML),
        Case("kube-play", kube_what, "POST", kube, KUBE_YAML, "default+kube"),
    ]


# --------------------------------------------------------------------------- capture


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers /_ping as an API 1.41 engine, records POST bodies, refuses them (500)."""

    protocol_version = "HTTP/1.1"
    bodies: ClassVar[list[tuple[str, bytes]]] = []
    agents: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _ping(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Api-Version", "1.41")
        self.send_header("Ostype", "linux")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._ping(b"")

    def do_GET(self) -> None:
        self._ping(b"OK")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.agents.append(self.headers.get("User-Agent") or "")
        self.bodies.append((self.path, self.rfile.read(length)))
        message = b'{"message":"recorded"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        self.wfile.write(message)

    def address_string(self) -> str:
        return "unix"


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def capture_cli(workdir: str, *run_args: str) -> bytes:
    """What `docker run --rm RUN_ARGS...` sends as its create body, recorded on a socket
    that plays an engine speaking API 1.41."""
    sock = os.path.join(workdir, "capture.sock")
    _Recorder.bodies, _Recorder.agents = [], []
    server = _UnixServer(sock, _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        harness.docker(sock, workdir, "run", "--rm", *run_args)
    except RuntimeError as exc:
        if "recorded" not in str(exc):
            raise
    finally:
        server.shutdown()
        server.server_close()
        with contextlib.suppress(OSError):
            os.unlink(sock)
    creates = [body for path, body in _Recorder.bodies if path.endswith("/containers/create")]
    if len(creates) != 1:
        raise RuntimeError(f"expected one create from the CLI, got {_Recorder.bodies!r}")
    return creates[0]


def cli_bodies(workdir: str) -> tuple[bytes, bytes, str]:
    """(allowed body, privileged body, where they came from): recorded from the Docker
    CLI now when it is installed, else the copies above."""
    if not os.access(harness.DOCKER_CLI, os.X_OK):
        return CLI_RUN, CLI_PRIVILEGED, "embedded copy (Docker CLI 28.2.2)"
    run = capture_cli(workdir, *RUN_ARGS, IMAGE, *RUN_CMD)
    priv = capture_cli(workdir, *PRIV_ARGS, IMAGE, *PRIV_CMD)
    agent = _Recorder.agents[-1] if _Recorder.agents else ""  # Docker-Client/28.2.2 (linux)
    version = agent.partition("/")[2].partition(" ")[0] or "?"
    for name, got, kept in (("run", run, CLI_RUN), ("privileged", priv, CLI_PRIVILEGED)):
        if got != kept:
            log(f"note: Docker CLI {version} sends another {name} body than the embedded copy")
    return run, priv, f"recorded from Docker CLI {version}"


# --------------------------------------------------------------------------- part 1


def timings(fn: Callable[[], object], n: int) -> list[int]:
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def spaced(fn: Callable[[], object], n: int, gap: float) -> list[int]:
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        time.sleep(gap)
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def quantiles_us(samples: list[int]) -> dict[str, float]:
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "median_us": statistics.median(samples) / 1000,
        "p10_us": qs[9] / 1000,
        "p90_us": qs[89] / 1000,
        "p99_us": qs[98] / 1000,
    }


def measure(case: Case, policy: Policy, args: argparse.Namespace) -> dict[str, Any]:
    """Median (and spread) of each stage for one body, after `warmup` untimed rounds; and
    of the whole pipeline run once after each of `spaced` idle gaps of `gap_ms` (a create
    through an engine leaves several ms between two decisions: caches go cold)."""
    iterations, warmup = args.iterations, args.warmup
    method, target, body = case.method, case.target, case.body
    cold_classify = classify.__wrapped__  # the function behind the lru_cache

    def pipeline(route_of: Callable[[str, str], Route]) -> Decision:
        route = route_of(method, target)
        request = normalize(route.operation, route.section, route.body, route.query, body)
        return evaluate(policy, request)

    for _ in range(warmup):
        pipeline(classify)
        pipeline(cold_classify)
    route = classify(method, target)
    request = normalize(route.operation, route.section, route.body, route.query, body)
    decision = evaluate(policy, request)
    stages = {
        "classify_cold": timings(lambda: cold_classify(method, target), iterations),
        "classify_warm": timings(lambda: classify(method, target), iterations),
        "normalize": timings(
            lambda: normalize(route.operation, route.section, route.body, route.query, body),
            iterations,
        ),
        "evaluate": timings(lambda: evaluate(policy, request), iterations),
        "total_cold": timings(lambda: pipeline(cold_classify), iterations),
        "total_warm": timings(lambda: pipeline(classify), iterations),
        "total_spaced": spaced(lambda: pipeline(cold_classify), args.spaced, args.gap_ms / 1000),
    }
    return {
        "case": case.name,
        "what": case.what,
        "policy": case.policy,
        "method": method,
        "target": target,
        "body_bytes": len(body),
        "operation": route.operation,
        "allowed": decision.allowed,
        "rule": decision.rule,
        "reason": decision.reason,
        "containers": len(request.containers),
        "stages": {k: quantiles_us(v) for k, v in stages.items()},
    }


def decision_cost(all_cases: list[Case], args: argparse.Namespace) -> dict[str, Any]:
    default = load_policy(POLICY, Context(OWN_SOCKETS))
    policies = {
        "default": default,
        # default.yaml does not allow the kube section: evaluate stops before any check
        "default+kube": dataclasses.replace(default, sections=default.sections | {"kube"}),
    }
    overhead = statistics.median(timings(lambda: None, args.iterations))
    rows = []
    for case in all_cases:
        row = measure(case, policies[case.policy], args)
        total = row["stages"]["total_cold"]["median_us"]
        cold = row["stages"]["total_spaced"]["median_us"]
        verdict = row["rule"] or "allow"
        log(f"  {case.name} [{case.policy}]: {verdict}, {total:.1f} µs, spaced {cold:.1f} µs")
        rows.append(row)
    return {
        "policy": os.path.relpath(POLICY, REPO),
        "iterations": args.iterations,
        "warmup": args.warmup,
        "spaced": args.spaced,
        "gap_ms": args.gap_ms,
        "harness_overhead_us": overhead / 1000,
        "cases": rows,
    }


def decision_table(result: dict[str, Any]) -> str:
    head: tuple[str, ...] = ("case", "bytes", "decision", "classify cold", "classify warm")
    head += ("decode+normalise", "evaluate", "total (cold)", "total (warm)", "total, spaced")
    rows: list[tuple[str, ...]] = [head]
    for row in result["cases"]:
        st = row["stages"]
        label = row["case"] + (" (+kube)" if row["policy"] == "default+kube" else "")
        verdict = "allow" if row["allowed"] else f"403 {row['rule']}"
        rows.append(
            (
                label,
                str(row["body_bytes"]),
                verdict,
                *(
                    f"{st[k]['median_us']:,.1f} µs"
                    for k in ("classify_cold", "classify_warm", "normalize", "evaluate")
                ),
                f"{st['total_cold']['median_us']:,.1f} µs",
                f"{st['total_warm']['median_us']:,.1f} µs",
                f"{st['total_spaced']['median_us']:,.1f} µs",
            )
        )
    return render(rows, right=(1, *range(3, len(head))))


def render(rows: list[tuple[str, ...]], right: range | tuple[int, ...] = ()) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        cells = [c.rjust(widths[j]) if j in right else c.ljust(widths[j]) for j, c in enumerate(r)]
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            rule = ["-" * (w + 1) + (":" if j in right else "-") for j, w in enumerate(widths)]
            lines.append("|" + "|".join(rule) + "|")
    return "\n".join(lines)


# --------------------------------------------------------------------------- part 2


def cpu_ns(pid: int) -> int:
    """CPU time all threads of `pid` have run so far, in ns (/proc/PID/task/*/schedstat:
    exact, where /proc/PID/stat counts 10 ms ticks)."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, ValueError),
                open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f,
            ):
                total += int(f.read().split()[0])
    return total


class UnixConnection(http.client.HTTPConnection):
    """One keep-alive HTTP/1.1 connection over AF_UNIX."""

    def __init__(self, path: str, timeout: float = 60.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock

    def call(self, method: str, target: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.request(method, target, body=body, headers=headers)
        resp = self.getresponse()
        return resp.status, resp.read()


@dataclass
class Side:
    name: str
    conn: UnixConnection
    create_s: list[float] = dataclasses.field(default_factory=list)
    delete_s: list[float] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)
    count: int = 0

    def cycle(self, body: bytes, record: bool) -> None:
        """POST /containers/create (a unique name), then DELETE it with force=1."""
        self.count += 1
        name = f"sbp-{self.name}-{self.count}"
        t0 = time.perf_counter()
        status, answer = self.conn.call("POST", f"{API}/containers/create?name={name}", body)
        t1 = time.perf_counter()
        if status != 201:
            self.failures.append(f"create {name}: {status} {answer[:300]!r}")
            return
        ident = json.loads(answer)["Id"]
        status, answer = self.conn.call("DELETE", f"{API}/containers/{ident}?force=1")
        t2 = time.perf_counter()
        if status != 204:
            self.failures.append(f"delete {name}: {status} {answer[:300]!r}")
            return
        if record:
            self.create_s.append(t1 - t0)
            self.delete_s.append(t2 - t1)

    def summary(self) -> dict[str, Any]:
        c, d = self.create_s, self.delete_s
        if not c:
            return {"failures": self.failures}
        q = statistics.quantiles(c, n=100, method="inclusive") if len(c) > 1 else [c[0]] * 99
        return {
            "creates": len(c),
            "creates_per_s": len(c) / sum(c),
            "cycles_per_s": len(c) / (sum(c) + sum(d)),
            "create_p50_ms": statistics.median(c) * 1000,
            "create_p99_ms": q[98] * 1000,
            "delete_p50_ms": statistics.median(d) * 1000,
            "create_ms": [round(x * 1000, 3) for x in c],
            "delete_ms": [round(x * 1000, 3) for x in d],
            "failures": self.failures,
        }


def throughput(
    engine_sock: str, proxy: harness.Proxy, body: bytes, privileged: bytes, n: int
) -> dict[str, Any]:
    bare = Side("bare", UnixConnection(engine_sock))
    prox = Side("proxy", UnixConnection(proxy.socket))
    for side in (bare, prox):  # warm-up: connections, the volume, the image lookup
        for _ in range(3):
            side.cycle(body, record=False)
    cpu0, client0 = cpu_ns(proxy.pid), time.thread_time_ns()
    for i in range(n):
        for side in (bare, prox) if i % 2 == 0 else (prox, bare):
            side.cycle(body, record=True)
    proxy_cpu, client_cpu = cpu_ns(proxy.pid) - cpu0, time.thread_time_ns() - client0
    status, answer = prox.conn.call(
        "POST", f"{API}/containers/create?name=sbp-privileged", privileged
    )
    message = answer.decode(errors="replace")[:500]
    ok = status == 403 and "rule no-privileged" in message
    refused = {"status": status, "message": message, "ok": ok}
    for side in (bare, prox):
        side.conn.close()
    out: dict[str, Any] = {
        "iterations": n,
        "bare": bare.summary(),
        "proxy": prox.summary(),
        "proxy_cpu_us_per_cycle": proxy_cpu / n / 1000 if n else None,
        "client_cpu_us_per_cycle": client_cpu / (2 * n) / 1000 if n else None,
        "privileged_via_proxy": refused,
    }
    b, p = out["bare"], out["proxy"]
    if "creates_per_s" in b and "creates_per_s" in p:
        out["ratio"] = {
            k: p[k] / b[k]
            for k in (
                "creates_per_s",
                "cycles_per_s",
                "create_p50_ms",
                "create_p99_ms",
                "delete_p50_ms",
            )
        }
    if len(bare.create_s) == len(prox.create_s) == n:
        # the same iteration on both sides: drift in the machine's load cancels out
        diffs = [p - b for p, b in zip(prox.create_s, bare.create_s, strict=True)]
        out["create_added_p50_ms"] = statistics.median(diffs) * 1000
    out["all_proxy_creates_201"] = not prox.failures and len(prox.create_s) == n
    return out


def throughput_table(result: dict[str, Any]) -> str:
    b, p, r = result["bare"], result["proxy"], result.get("ratio", {})
    rows: list[tuple[str, ...]] = [("metric", "bare", "sockproxy", "ratio")]
    labels = (
        ("creates_per_s", "POST /containers/create", "{:,.1f} /s"),
        ("create_p50_ms", "↳ create p50", "{:.2f} ms"),
        ("create_p99_ms", "↳ create p99", "{:.2f} ms"),
        ("delete_p50_ms", "DELETE /containers/{id} p50", "{:.2f} ms"),
        ("cycles_per_s", "create + delete cycles", "{:,.1f} /s"),
    )
    for key, label, form in labels:
        rows.append(
            (
                label,
                form.format(b[key]) if key in b else "ERR",
                form.format(p[key]) if key in p else "ERR",
                f"{r[key]:.2f}x" if key in r else "—",
            )
        )
        if key == "create_p99_ms" and "create_added_p50_ms" in result:
            added = result["create_added_p50_ms"]
            rows.append(("↳ added per create (paired p50)", "—", f"{added:+.2f} ms", "—"))
    return render(rows, right=(1, 2, 3))


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--engine", choices=("podman", "docker"), default="podman")
    p.add_argument("--quick", action="store_true", help="smoke run: fewer iterations, 10 creates")
    p.add_argument("--no-engine", action="store_true", help="decision cost only (part 1)")
    p.add_argument("--iterations", type=int, default=5000, help="timed calls per stage and body")
    p.add_argument("--warmup", type=int, default=500, help="untimed calls per body first")
    p.add_argument("--spaced", type=int, default=200, help="pipeline runs after an idle gap")
    p.add_argument("--gap-ms", type=float, default=5.0, help="idle gap before a spaced run")
    p.add_argument("--creates", type=int, default=50, help="create + delete cycles per side")
    p.add_argument("--out", default=os.path.join(BENCH, "out", "policy.json"))
    p.add_argument("--keep", action="store_true", help="keep the private directory")
    args = p.parse_args(argv)
    if args.quick:
        args.iterations, args.warmup, args.spaced, args.creates = 500, 50, 40, 10
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="sbp-", dir="/tmp")  # short: AF_UNIX paths <= 107 bytes
    os.makedirs(os.path.join(workdir, "docker-config"))
    engine: engines.Engine | None = None
    proxy: harness.Proxy | None = None
    status = 0
    try:
        _, label = harness.proxy_source(workdir, None)
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        machine = harness.machine_info()
        load = os.getloadavg()
        result: dict[str, Any] = {"date": when, "machine": machine, "sockproxy_version": label}
        result["loadavg_start"] = load
        run_body, priv_body, source = cli_bodies(workdir)
        result["docker_cli_bodies"] = source
        log(f"decision cost: {args.iterations} timed calls per stage ({source})")
        result["decision"] = decision_cost(cases(run_body, priv_body), args)
        tables = [
            f"{when}  machine: {machine['cpus']} cpus ({machine['cpu_model']}), "
            f"{machine['os']}, Python {machine['python']}  sockproxy: {label}  "
            f"load average: {load[0]:.2f}",
            "",
            f"decision cost, in process: median of {args.iterations} back-to-back calls per "
            f"stage; spaced: median of {args.spaced} runs of the whole pipeline (classify "
            f"cold), each after {args.gap_ms:g} ms idle; policy {result['decision']['policy']}; "
            f"Docker bodies {source}",
            decision_table(result["decision"]),
        ]
        if not args.no_engine:
            log(f"starting {args.engine} in {workdir}/engine")
            engine = engines.start_engine(args.engine, os.path.join(workdir, "engine"))
            engines.import_busybox(engine)
            ver = harness.engine_version(engine.socket)
            result["engine"] = {"kind": args.engine, **ver}
            log(f"{args.engine} {ver.get('version', '?')} pid {engine.pid} at {engine.socket}")
            proxy = harness.start_proxy(workdir, engine.socket, ["--policy", POLICY], REPO)
            log(f"sockproxy pid {proxy.pid} at {proxy.socket}")
            bind_dir = os.path.join(workdir, "x")  # -v /tmp/x:/x, but inside our directory
            os.makedirs(bind_dir)
            body = run_body.replace(b'"/tmp/x:/x"', json.dumps(f"{bind_dir}:/x").encode())
            log(f"{args.creates} create + delete cycles per side, interleaved")
            tp = throughput(engine.socket, proxy, body, priv_body, args.creates)
            result["throughput"] = tp
            if proxy.proc.poll() is not None:
                raise RuntimeError(f"sockproxy exited; log {proxy.log}:\n{harness.tail(proxy.log)}")
            tables += [
                "",
                f"allowed creates, {args.engine} {ver.get('version', '?')}: "
                f"{args.creates} create + delete cycles per side, interleaved, "
                "one keep-alive connection each; ratio = sockproxy / bare",
                throughput_table(tp),
                f"CPU per create + delete cycle: sockproxy {tp['proxy_cpu_us_per_cycle']:,.0f} µs, "
                f"this client (http.client) {tp['client_cpu_us_per_cycle']:,.0f} µs",
                f"every create through sockproxy 201: {tp['all_proxy_creates_201']}; "
                f"--privileged through sockproxy: {tp['privileged_via_proxy']['status']} "
                + ("(rule no-privileged) ok" if tp["privileged_via_proxy"]["ok"] else "WRONG"),
            ]
            for side in ("bare", "proxy"):
                for failure in tp[side]["failures"]:
                    log(f"  {side}: {failure}")
            if not (tp["all_proxy_creates_201"] and tp["privileged_via_proxy"]["ok"]):
                status = 1
            if tp["bare"]["failures"]:
                status = 1
        table = "\n".join(tables)
        print(table)
        result["table"] = table
        result["params"] = {k: v for k, v in vars(args).items() if k != "out"}
        result["elapsed_s"] = round(time.monotonic() - started, 1)
        result["loadavg_end"] = os.getloadavg()
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        log(f"wrote {args.out} ({result['elapsed_s']:.0f}s in all)")
        return status
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (RuntimeError, engines.EngineError, OSError, subprocess.CalledProcessError) as exc:
        log(f"error: {exc}")
        return 2
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if proxy:
            proxy.stop()
        if engine:
            engine.stop()  # removes its containers, stops exactly its processes, unmounts
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
