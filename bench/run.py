#!/usr/bin/env python3
"""Benchmark: the bare engine socket and sockproxy in front of it, side by side.

One run starts a private engine (scripts/engines.py), imports busybox and a
256 MiB image, starts ``python -m sockproxy serve`` in front of the engine,
then runs every measurement against both sockets, alternating the order
(bare, proxy, proxy, bare, ...) and taking the median of the repeats. It
prints a table of bare vs sockproxy with the ratio and the target, and
writes bench/out/results.json.

    python3 bench/run.py [--engine podman|docker] [--bare-only] [--quick]

``--bare-only`` starts no proxy and measures the bare socket in both columns:
a check of the harness itself (every ratio should be close to 1.0).

Load comes from bench/loadgen (built here from bench/loadgen.c) and, for
exec and run, from the real Docker CLI. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "scripts"))

import engines  # noqa: E402  (scripts/engines.py)

LOADGEN_SRC = os.path.join(BENCH, "loadgen.c")
LOADGEN = os.path.join(BENCH, "loadgen")
DOCKER_CLI = "/usr/local/bin/docker"
VENV_PYTHON = os.path.join(REPO, ".venv", "bin", "python")
API = "/v1.41"  # what the Docker CLI negotiates with Podman 4.3 and Docker 20.10
BIG_IMAGE = "localhost/sockproxy-bench-big:latest"
BIG_FILE = "/bigfile"  # inside BIG_IMAGE, read by the exec measurement
MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# metric -> (unit, which way is better, target kind, target ratio)
#   target kind "min": proxy/bare must be >= ratio; "max": must be <= ratio.
METRICS: dict[str, tuple[str, str, str | None, float | None]] = {
    "ping_rps_c1": ("req/s", "higher", None, None),
    "ping_rps_c32": ("req/s", "higher", "min", 0.60),
    "containers_json_p50": ("ms", "lower", None, None),
    "containers_json_p99": ("ms", "lower", None, None),
    "download_mib_s": ("MiB/s", "higher", "min", 0.95),
    "download_body_mib_s": ("MiB/s", "higher", None, None),
    "download_ttfb": ("s", "lower", None, None),
    "upload_mib_s": ("MiB/s", "higher", "min", 0.90),
    "exec_mib_s": ("MiB/s", "higher", "min", 0.85),
    "exec_true": ("s", "lower", None, None),
    "run_rm": ("s", "lower", "max", 1.05),
}
LABELS = {
    "ping_rps_c1": "GET /_ping, 1 conn",
    "ping_rps_c32": "GET /_ping, 32 conns",
    "containers_json_p50": "GET /containers/json p50",
    "containers_json_p99": "GET /containers/json p99",
    "download_mib_s": "GET /images/{name}/get",
    "download_body_mib_s": "↳ body after first byte",
    "download_ttfb": "↳ time to first byte",
    "upload_mib_s": "PUT /containers/{id}/archive",
    "exec_mib_s": "docker exec C cat BIGFILE",
    "exec_true": "↳ docker exec C true",
    "run_rm": "docker run --rm IMG true",
}
# metric -> the measurement ("what") that produces it
SOURCE = {
    "ping_rps_c1": "ping_c1",
    "ping_rps_c32": "ping_c32",
    "containers_json_p50": "containers_json",
    "containers_json_p99": "containers_json",
    "download_mib_s": "download",
    "download_body_mib_s": "download",
    "download_ttfb": "download",
    "upload_mib_s": "upload",
    "exec_mib_s": "exec",
    "exec_true": "exec_true",
    "run_rm": "run_rm",
}
# RSS is "flat" when streaming a body of SIZE raises the proxy's RSS by at most
# this many MiB over its level before the stream (a buffering proxy grows by SIZE).
RSS_FLAT_MIB = 32.0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def build_loadgen() -> None:
    if os.path.exists(LOADGEN) and os.path.getmtime(LOADGEN) >= os.path.getmtime(LOADGEN_SRC):
        return
    cc = os.environ.get("CC", "cc")
    log(f"building {os.path.relpath(LOADGEN, REPO)}")
    subprocess.run([cc, "-O2", "-Wall", "-pthread", "-o", LOADGEN, LOADGEN_SRC], check=True)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of `pid` in bytes (empty when it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds used so far by `pid` (its own threads)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy() -> float:
    """CPU seconds all CPUs spent busy (not idle/iowait) since boot, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


class RssSampler:
    """Peak VmRSS of one process while in a `with`: sampled every few ms on a thread,
    and exact whenever the peak is also a new lifetime high (VmHWM rose)."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.pid, self.interval = pid, interval
        self.before = self.peak = self.after = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = proc_status(self.pid).get("VmRSS", 0)
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        st = proc_status(self.pid)
        self.before, self._hwm_before = st.get("VmRSS", 0), st.get("VmHWM", 0)
        self.peak = self.before
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        st = proc_status(self.pid)
        self.after = st.get("VmRSS", 0)
        self.hwm = st.get("VmHWM", 0)
        self.peak = max(self.peak, self.after)
        if self.hwm > self._hwm_before:  # a new lifetime high: it happened during the stream
            self.peak = max(self.peak, self.hwm)

    def as_dict(self) -> dict[str, float]:
        return {
            "before_mib": self.before / MIB,
            "peak_mib": self.peak / MIB,
            "after_mib": self.after / MIB,
            "hwm_mib": self.hwm / MIB,
            "samples": self.samples,
        }


@dataclass
class Proxy:
    socket: str
    proc: subprocess.Popen[bytes]
    log: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            os.unlink(self.socket)


def start_proxy(workdir: str, upstream: str, extra: list[str], src: str) -> Proxy:
    """`python -m sockproxy serve` run from `src`: the package there is imported first."""
    sock = os.path.join(workdir, "proxy.sock")
    logfile = os.path.join(workdir, "sockproxy.log")
    argv = [
        VENV_PYTHON,
        "-m",
        "sockproxy",
        "serve",
        "--listen",
        f"unix://{sock}",
        "--upstream",
        f"unix://{upstream}",
        *extra,
    ]
    log("starting " + " ".join(argv[1:]))
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=src,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proxy = Proxy(sock, proc, logfile)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"sockproxy exited with {proc.returncode}; see {logfile}:\n" + tail(logfile)
            )
        if os.path.exists(sock):
            with contextlib.suppress(OSError, http.client.HTTPException):
                if engines.api_request(sock, "GET", "/_ping", timeout=2)[0] == 200:
                    return proxy
        time.sleep(0.1)
    proxy.stop()
    raise RuntimeError(f"sockproxy did not answer GET /_ping within 30s; see {logfile}")


def tail(path: str, n: int = 30) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- clients


def loadgen(sock: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [LOADGEN, "--socket", sock, *args], capture_output=True, text=True, timeout=600
    )
    try:
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(
            f"loadgen {' '.join(args)}: no result (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}"
        ) from None
    if proc.returncode != 0:
        raise RuntimeError(
            f"loadgen {' '.join(args)} failed: {json.dumps(result)} {proc.stderr.strip()[-500:]}"
        )
    return result


def docker_env(sock: str, workdir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = f"unix://{sock}"
    env["DOCKER_CONFIG"] = os.path.join(workdir, "docker-config")  # no user config
    return env


def docker(sock: str, workdir: str, *args: str, capture: bool = True, timeout: float = 300) -> str:
    proc = subprocess.run(
        [DOCKER_CLI, *args],
        env=docker_env(sock, workdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args)}: exit {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return proc.stdout.decode().strip() if capture else ""


def timed_docker(sock: str, workdir: str, *args: str) -> float:
    t0 = time.perf_counter()
    docker(sock, workdir, *args, capture=False)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- fixtures


def write_big_tar(path: str, size: int) -> None:
    """A root filesystem: static busybox with a few applets, /tmp, and BIG_FILE of
    `size` random bytes (generated once per run)."""
    now = int(time.time())

    class Random:
        def __init__(self, n: int) -> None:
            self.left = n

        def read(self, k: int = -1) -> bytes:
            k = self.left if k < 0 else min(k, self.left)
            self.left -= k
            return os.urandom(k)

    with tarfile.open(path, "w") as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777), ("etc", 0o755)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
            tar.addfile(info)
        tar.add("/bin/busybox", "bin/busybox")
        for applet in ("sh", "cat", "sleep", "true", "ls", "dd", "wc"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "busybox", now
            tar.addfile(info)
        info = tarfile.TarInfo(BIG_FILE.lstrip("/"))
        info.size, info.mode, info.mtime = size, 0o644, now
        tar.addfile(info, Random(size))


@dataclass
class Fixture:
    workdir: str
    engine_sock: str
    size: int
    busybox: str = engines.BUSYBOX_IMAGE
    upload_ctr: str = ""
    exec_ctr: str = ""
    containers: list[str] = field(default_factory=list)


def prepare(fx: Fixture, idle: int) -> None:
    s, w = fx.engine_sock, fx.workdir
    tar = os.path.join(w, "big.tar")
    t0 = time.monotonic()
    write_big_tar(tar, fx.size)
    docker(s, w, "import", "--change", 'CMD ["/bin/sh"]', tar, BIG_IMAGE)
    os.unlink(tar)
    log(f"imported {BIG_IMAGE} ({fx.size // MIB} MiB file) in {time.monotonic() - t0:.1f}s")
    for i in range(idle):
        fx.containers.append(
            docker(s, w, "create", "--name", f"bench-idle-{i}", fx.busybox, "true")
        )
    fx.upload_ctr = docker(s, w, "create", "--name", "bench-upload", fx.busybox, "true")
    fx.exec_ctr = docker(s, w, "run", "-d", "--name", "bench-exec", BIG_IMAGE, "sleep", "1000000")
    fx.containers += [fx.upload_ctr, fx.exec_ctr]


# --------------------------------------------------------------------------- measurements


@dataclass
class Side:
    name: str  # "bare" | "proxy"
    sock: str
    proxy_pid: int | None  # sampled for RSS/CPU when this side goes through the proxy


@dataclass
class Bench:
    fx: Fixture
    engine_pid: int
    args: argparse.Namespace
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    raw: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    rss: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def record(self, metric: str, side: Side, value: float) -> None:
        self.samples.setdefault(metric, {}).setdefault(side.name, []).append(value)

    def run(
        self, what: str, side: Side, fn: Callable[[str], dict[str, float]], sample_rss: bool = False
    ) -> None:
        """Run one measurement on one side, with CPU (and RSS) accounting."""
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        e_cpu0 = proc_cpu(self.engine_pid)
        p_cpu0 = proc_cpu(side.proxy_pid) if side.proxy_pid else 0.0
        busy0 = machine_busy()
        sampler = RssSampler(side.proxy_pid) if (sample_rss and side.proxy_pid) else None
        t0 = time.monotonic()
        try:
            with sampler if sampler else contextlib.nullcontext():
                values = fn(side.sock)
        except Exception as exc:  # one failed measurement must not end the run
            msg = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else repr(exc)
            log(f"  {what} [{side.name}] FAILED: {msg}")
            self.errors.setdefault(what, {})[side.name] = msg
            return
        wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        entry: dict[str, Any] = {
            "what": what,
            "side": side.name,
            "wall_s": round(wall, 4),
            **values,
            "client_cpu_s": round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 3),
            "engine_cpu_s": round(proc_cpu(self.engine_pid) - e_cpu0, 3),
            "harness_cpu_s": round(
                self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime, 3
            ),
            # everything busy on the machine: the above, the proxy, conmon/runc/containers,
            # and whatever else runs here (compare with cpus * wall_s)
            "machine_busy_cpu_s": round(machine_busy() - busy0, 3),
        }
        if side.proxy_pid:
            entry["proxy_cpu_s"] = round(proc_cpu(side.proxy_pid) - p_cpu0, 3)
        if sampler:
            entry["proxy_rss"] = sampler.as_dict()
            self.rss.setdefault(what, []).append(sampler.as_dict())
        self.raw.append(entry)
        for metric, value in values.items():
            if metric in METRICS:
                self.record(metric, side, value)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if k in METRICS)
        cpu = f" proxy_cpu={entry['proxy_cpu_s']:.2f}s" if "proxy_cpu_s" in entry else ""
        log(f"  {what} [{side.name}] {shown} (wall {wall:.2f}s{cpu})")

    def alternate(self, sides: list[Side], reps: int) -> Iterator[Side]:
        """bare, proxy, proxy, bare, bare, proxy, ...: drift hits both sides alike."""
        for r in range(reps):
            yield from (sides if r % 2 == 0 else sides[::-1])

    # -- the measurements ---------------------------------------------------

    def ping(self, sides: list[Side]) -> None:
        a = self.args
        for conns in (1, 32):
            log(f"GET /_ping, {conns} connection(s), {a.duration:g}s x {a.ping_reps}")

            def fn(sock: str, conns: int = conns) -> dict[str, float]:
                opts = f"--mode rps --path /_ping --conns {conns} --duration {a.duration}"
                r = loadgen(sock, *opts.split(), "--warmup", "20")
                return {
                    f"ping_rps_c{conns}": r["rps"],
                    f"ping_p50_ms_c{conns}": r["lat_p50_ms"],
                    f"ping_p99_ms_c{conns}": r["lat_p99_ms"],
                }

            for side in self.alternate(sides, a.ping_reps):
                self.run(f"ping_c{conns}", side, fn)

    def containers_json(self, sides: list[Side]) -> None:
        a = self.args
        log(f"GET /containers/json?all=1 latency, {a.latency_count} requests x {a.reps}")

        def fn(sock: str) -> dict[str, float]:
            path = f"{API}/containers/json?all=1"
            opts = f"--mode latency --path {path} --count {a.latency_count} --warmup 50"
            r = loadgen(sock, *opts.split())
            return {
                "containers_json_p50": r["lat_p50_ms"],
                "containers_json_p99": r["lat_p99_ms"],
                "containers_json_mean": r["lat_mean_ms"],
            }

        for side in self.alternate(sides, a.reps):
            self.run("containers_json", side, fn)

    def download(self, sides: list[Side]) -> None:
        log(f"GET /images/{BIG_IMAGE}/get x {self.args.reps}")

        def fn(sock: str) -> dict[str, float]:
            r = loadgen(sock, "--mode", "download", "--path", f"{API}/images/{BIG_IMAGE}/get")
            body_s = r["elapsed_s"] - r["ttfb_s"]
            return {
                "download_mib_s": r["mib_s"],
                "download_body_mib_s": r["bytes"] / body_s / MIB if body_s > 0 else 0.0,
                "download_ttfb": r["ttfb_s"],
                "download_bytes": r["bytes"],
                "download_chunked": float(r["framing"] == "chunked"),
            }

        for side in self.alternate(sides, self.args.reps):
            self.run("download", side, fn, sample_rss=True)

    def upload(self, sides: list[Side]) -> None:
        fx = self.fx
        log(f"PUT /containers/{{id}}/archive, {fx.size // MIB} MiB tar x {self.args.reps}")

        def fn(sock: str) -> dict[str, float]:
            path = f"{API}/containers/{fx.upload_ctr}/archive?path=/tmp"
            opts = f"--mode upload --path {path} --size {fx.size} --tar-name upload.bin"
            r = loadgen(sock, *opts.split())
            return {"upload_mib_s": r["mib_s"], "upload_bytes": r["sent_bytes"]}

        for side in self.alternate(sides, self.args.reps):
            self.run("upload", side, fn, sample_rss=True)

    def exec_stream(self, sides: list[Side]) -> None:
        fx = self.fx
        log(f"docker exec C cat {BIG_FILE} > /dev/null x {self.args.reps}")

        def fn(sock: str) -> dict[str, float]:
            wall = timed_docker(sock, fx.workdir, "exec", fx.exec_ctr, "cat", BIG_FILE)
            return {"exec_mib_s": fx.size / wall / MIB, "exec_wall_s": wall}

        def fn_true(sock: str) -> dict[str, float]:
            return {"exec_true": timed_docker(sock, fx.workdir, "exec", fx.exec_ctr, "true")}

        for side in self.alternate(sides, self.args.reps):
            self.run("exec", side, fn, sample_rss=True)
        for side in self.alternate(sides, self.args.reps):
            self.run("exec_true", side, fn_true)

    def run_rm(self, sides: list[Side]) -> None:
        fx = self.fx
        log(f"docker run --rm {fx.busybox} true x {self.args.run_count}")

        def fn(sock: str) -> dict[str, float]:
            return {"run_rm": timed_docker(sock, fx.workdir, "run", "--rm", fx.busybox, "true")}

        for side in self.alternate(sides, self.args.run_count):
            self.run("run_rm", side, fn)


# --------------------------------------------------------------------------- report


def spread(values: list[float]) -> float | None:
    """Half the interquartile range relative to the median: the +-x noise of one side."""
    if len(values) < 3:
        return None
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    med = statistics.median(values)
    return (q3 - q1) / 2 / med if med else None


def background_load(bench: Bench) -> float | None:
    """Average CPUs busy with other processes while the request/response rows ran: all
    busy CPU time minus this script, loadgen, engine and proxy. The streaming, exec and
    run rows are left out: the engine's helpers (conmon, runc, Podman's untar child)
    and the kernel's writeback would count as "other" there."""
    own = ("ping_c1", "ping_c32", "containers_json")
    runs = [e for e in bench.raw if e["what"] in own]
    wall = float(sum(e["wall_s"] for e in runs))
    if not wall:
        return None
    other = sum(
        e["machine_busy_cpu_s"]
        - e["client_cpu_s"]
        - e["engine_cpu_s"]
        - e["harness_cpu_s"]
        - e.get("proxy_cpu_s", 0)
        for e in runs
    )
    return max(float(other), 0.0) / wall


def summarize(bench: Bench, proxy_label: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric, (unit, better, kind, target) in METRICS.items():
        per_side = bench.samples.get(metric, {})
        if not per_side and SOURCE[metric] not in bench.errors:
            continue  # not measured in this run (--only)
        row: dict[str, Any] = {"unit": unit, "better": better, "label": LABELS[metric]}
        for side in ("bare", "proxy"):
            values = per_side.get(side, [])
            row[side] = {
                "median": statistics.median(values) if values else None,
                "spread": spread(values),
                "samples": [round(v, 4) for v in values],
            }
        errs = bench.errors.get(SOURCE[metric], {})
        if errs:
            row["errors"] = errs
        b, p = row["bare"]["median"], row["proxy"]["median"]
        row["ratio"] = (p / b) if (b and p is not None) else None
        row["target"] = None if kind is None else {"kind": kind, "ratio": target}
        if kind is None:
            row["ok"] = None
        elif row["ratio"] is None:
            row["ok"] = False
        else:
            row["ok"] = row["ratio"] >= target if kind == "min" else row["ratio"] <= target
        out[metric] = row
    return out


def summarize_rss(bench: Bench) -> dict[str, Any] | None:
    if not bench.rss:
        return None
    streams = [s for what in ("download", "upload", "exec") for s in bench.rss.get(what, [])]
    per = {
        what: {
            "before_mib": min(s["before_mib"] for s in v),
            "peak_mib": max(s["peak_mib"] for s in v),
            "after_mib": v[-1]["after_mib"],
            "growth_mib": max(s["peak_mib"] - s["before_mib"] for s in v),
        }
        for what, v in bench.rss.items()
    }
    growth = max(s["peak_mib"] - s["before_mib"] for s in streams)
    return {
        "per_stream": per,
        "max_growth_mib": growth,
        "hwm_mib": streams[-1]["hwm_mib"],
        "limit_growth_mib": RSS_FLAT_MIB,
        "ok": growth <= RSS_FLAT_MIB,
    }


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "ERR"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:,.1f} {unit}"


def render_table(summary: dict[str, Any], rss: dict[str, Any] | None, proxy_label: str) -> str:
    rows = [("metric", "bare", proxy_label, "ratio", "target", "", "noise")]
    for row in summary.values():
        unit = row["unit"]
        spreads = [x for x in (row["bare"]["spread"], row["proxy"]["spread"]) if x is not None]
        noise = f"±{max(spreads) * 100:.0f}%" if spreads else ""
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        tgt = row["target"]
        target = (
            ""
            if tgt is None
            else (
                ("≥ " if tgt["kind"] == "min" else "≤ ")
                + f"{tgt['ratio']:.2f}x"
                + (" time" if row["better"] == "lower" else "")
            )
        )
        ok = "" if row["ok"] is None else ("ok" if row["ok"] else "MISS")
        rows.append(
            (
                row["label"],
                fmt(row["bare"]["median"], unit),
                fmt(row["proxy"]["median"], unit),
                ratio,
                target,
                ok,
                noise,
            )
        )
    if rss:
        for what, r in rss["per_stream"].items():
            rows.append(
                (
                    f"proxy RSS during {what}",
                    "—",
                    f"{r['before_mib']:.1f} → {r['peak_mib']:.1f} → {r['after_mib']:.1f} MiB",
                    f"+{r['growth_mib']:.1f} MiB",
                    f"flat (≤ +{RSS_FLAT_MIB:.0f} MiB)",
                    "ok" if r["growth_mib"] <= RSS_FLAT_MIB else "MISS",
                    "",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(widths[j]) for j, c in enumerate(r)) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as f:
        mem = int(f.readline().split()[1]) // 1024
    os_name = ""
    with contextlib.suppress(OSError), open("/etc/os-release", encoding="utf-8") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_mib": mem,
        "kernel": platform.release(),
        "os": os_name,
        "python": platform.python_version(),
    }


def engine_version(sock: str) -> dict[str, str]:
    with contextlib.suppress(Exception):
        status, body = engines.api_request(sock, "GET", "/version", timeout=10)
        if status == 200:
            v = json.loads(body)
            return {"version": str(v.get("Version", "")), "api_version": str(v.get("ApiVersion"))}
    return {}


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", REPO, *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def proxy_source(workdir: str, commit: str | None) -> tuple[str, str]:
    """(directory to run sockproxy from, its version label). Without `commit`: this
    working tree, labelled like `3cbdbbb-dirty` when it has uncommitted changes. With
    `commit`: that commit's sockproxy/, exported into the private directory."""
    if commit is None:
        label = ""
        with contextlib.suppress(Exception):
            label = git("describe", "--always", "--dirty", "--abbrev=7")
        return REPO, label or "unknown"
    src = os.path.join(workdir, "src")
    os.makedirs(src)
    archive = subprocess.run(
        ["git", "-C", REPO, "archive", "--format=tar", commit, "sockproxy"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    return src, git("rev-parse", "--short=7", commit)


# --------------------------------------------------------------------------- main


ALL = ("ping", "containers_json", "download", "upload", "exec", "run_rm")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--engine", choices=("podman", "docker"), default="podman")
    p.add_argument(
        "--bare-only",
        action="store_true",
        help="no proxy: measure the bare socket in both columns (harness check)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="short smoke run: 1 s ping, 1 repeat, 64 MiB streams, 3 runs",
    )
    p.add_argument("--reps", type=int, default=5, help="repeats per side (median taken)")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per /_ping run")
    p.add_argument(
        "--ping-reps",
        type=int,
        default=8,
        help="/_ping runs per side: many short runs, interleaved, resist bursts of other load",
    )
    p.add_argument(
        "--latency-count", type=int, default=1000, help="requests per /containers/json latency run"
    )
    p.add_argument("--size-mib", type=int, default=256, help="size of streamed bodies")
    p.add_argument("--run-count", type=int, default=15, help="docker run --rm per side")
    p.add_argument(
        "--idle-containers",
        type=int,
        default=5,
        help="extra created containers listed by /containers/json",
    )
    p.add_argument(
        "--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}"
    )
    p.add_argument(
        "--proxy-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `sockproxy serve` (repeatable)",
    )
    p.add_argument(
        "--proxy-commit",
        metavar="REV",
        help="benchmark sockproxy/ as of this commit (default: the working tree as it is)",
    )
    p.add_argument("--out", default=os.path.join(BENCH, "out", "results.json"))
    p.add_argument("--keep", action="store_true", help="keep the private directory")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.ping_reps, args.duration, args.size_mib = 1, 1, 1.0, 64
        args.run_count, args.latency_count = 3, 300
    unknown = set(args.only.split(",")) - set(ALL)
    if unknown:
        p.error(f"--only: unknown {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    loadavg0 = os.getloadavg()
    build_loadgen()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    workdir = tempfile.mkdtemp(prefix="sb-", dir="/tmp")  # short: AF_UNIX paths <= 107 bytes
    os.makedirs(os.path.join(workdir, "docker-config"))
    engine: engines.Engine | None = None
    proxy: Proxy | None = None
    try:
        proxy_src, proxy_label_git = proxy_source(workdir, args.proxy_commit)
        log(f"starting {args.engine} in {workdir}/engine")
        engine = engines.start_engine(args.engine, os.path.join(workdir, "engine"))
        engines.import_busybox(engine)
        ver = engine_version(engine.socket)
        log(
            f"{args.engine} {ver.get('version', '?')} (API {ver.get('api_version', '?')}) "
            f"pid {engine.pid} at {engine.socket}"
        )
        fx = Fixture(workdir, engine.socket, args.size_mib * MIB)
        prepare(fx, args.idle_containers)
        if args.bare_only:
            proxy_side = Side("proxy", engine.socket, None)
            proxy_label = "bare (again)"
        else:
            proxy = start_proxy(workdir, engine.socket, args.proxy_arg, proxy_src)
            log(f"sockproxy pid {proxy.pid} at {proxy.socket}")
            proxy_side = Side("proxy", proxy.socket, proxy.pid)
            proxy_label = "sockproxy"
        sides = [Side("bare", engine.socket, None), proxy_side]
        bench = Bench(fx, engine.pid, args)
        only = args.only.split(",")
        steps: list[tuple[str, Callable[[list[Side]], None]]] = [
            ("ping", bench.ping),
            ("containers_json", bench.containers_json),
            ("download", bench.download),
            ("upload", bench.upload),
            ("exec", bench.exec_stream),
            ("run_rm", bench.run_rm),
        ]
        for name, step in steps:
            if name in only:
                step(sides)
            if proxy and proxy.proc.poll() is not None:
                raise RuntimeError(
                    f"sockproxy exited with {proxy.proc.returncode} during "
                    f"{name}; log {proxy.log}:\n{tail(proxy.log)}"
                )

        summary = summarize(bench, proxy_label)
        rss = summarize_rss(bench)
        background = background_load(bench)
        table = render_table(summary, rss, proxy_label)
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        machine = machine_info()
        header = (
            f"{when}  engine: {args.engine} {ver.get('version', '?')}  "
            f"machine: {machine['cpus']} cpus ({machine['cpu_model']}), "
            f"{machine['os']}  sockproxy: {proxy_label_git}"
            + ("  [--bare-only: both columns are the bare socket]" if args.bare_only else "")
        )
        print(header)
        print(
            f"medians of {args.reps} runs per side ({args.ping_reps} for /_ping, "
            f"{args.run_count} for run --rm); "
            "ratio = sockproxy / bare; noise = half the interquartile range / median"
        )
        if background is not None:
            print(
                f"background load from other processes: {background:.2f} of "
                f"{os.cpu_count()} CPUs"
                + ("  (busy machine: expect noisy ratios)" if background > 0.25 else "")
            )
        print(table)
        result = {
            "date": when,
            "mode": "bare-only" if args.bare_only else "proxy",
            "engine": {"kind": args.engine, **ver},
            "machine": machine,
            "sockproxy_version": proxy_label_git,
            "params": {k: v for k, v in vars(args).items() if k not in ("out",)},
            "metrics": summary,
            "proxy_rss": rss,
            "errors": bench.errors,
            "runs": bench.raw,
            "table": table,
            "background_cpus": background,
            "loadavg": {"start": loadavg0, "end": os.getloadavg()},
            "elapsed_s": round(time.monotonic() - started, 1),
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        log(f"wrote {args.out} ({time.monotonic() - started:.0f}s in all)")
        return 1 if bench.errors else 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (RuntimeError, engines.EngineError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else b""
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        log(f"error: {exc} {detail or ''}".strip())
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
