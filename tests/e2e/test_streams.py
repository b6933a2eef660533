"""The real Docker CLI through sockproxy: streamed and hijacked connections.

logs (multiplexed stdout/stderr), logs -f and events (long-lived chunked streams that
must arrive as they are produced), exec/attach (hijacked, bidirectional, with
half-close), a TTY exec, stats and cp (tar archives both ways).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from .dockercli import IMAGE, Containers, DockerCLI, describe, unique

pytestmark = pytest.mark.e2e


def finished_at(docker: DockerCLI, name: str) -> float:
    """The container's State.FinishedAt as a Unix timestamp."""
    text = docker.ok("inspect", "-f", "{{.State.FinishedAt}}", name).strip()
    # "2026-11-23T10:41:10.123456789Z"; Python 3.11 reads at most microseconds exactly.
    return datetime.fromisoformat(text).timestamp()


def test_logs_replays_stdout_and_stderr_separately(
    docker: DockerCLI, containers: Containers
) -> None:
    """`docker logs` of an exited container replays its stdout and stderr on the right streams."""
    name = containers.run_detached(
        IMAGE, "sh", "-c", "echo to-stdout; echo to-stderr >&2; echo more-stdout"
    )
    assert docker.ok("wait", name).strip() == "0"
    res = docker("logs", name)
    assert res.returncode == 0, describe(res)
    assert res.stdout == "to-stdout\nmore-stdout\n"
    assert res.stderr == "to-stderr\n"


def test_logs_follow_streams_lines_as_produced_and_ends_with_the_container(
    docker: DockerCLI, containers: Containers
) -> None:
    """`docker logs -f` delivers each line while the container still runs, then ends by itself."""
    count = 15
    name = containers.run_detached(
        IMAGE, "sh", "-c", f"for i in $(seq 1 {count}); do echo line-$i; sleep 0.2; done"
    )
    stream = docker.popen("logs", "-f", name)
    try:
        received: list[tuple[float, str]] = []
        while True:
            at, line = stream.next_line(timeout=60)
            if line is None:
                break
            received.append((at, line))
        assert stream.wait(timeout=30) == 0, stream.stderr
    finally:
        stream.close()
    assert [line for _, line in received] == [f"line-{i}" for i in range(1, count + 1)]
    ended = finished_at(docker, name)
    first_at = received[0][0]
    # The container needs ~3 s; a proxy that buffers the response delivers everything at
    # the end. The first line must arrive well before the container exits.
    assert first_at < ended - 1.0, (
        f"first line arrived {first_at - ended:+.2f}s relative to the container's exit"
    )
    assert received[-1][0] - first_at > 1.0, "all lines arrived in one burst"


def test_exec_runs_a_command_and_returns_its_status(
    docker: DockerCLI, containers: Containers
) -> None:
    """`docker exec` prints the command's output and exits with its status."""
    name = containers.run_detached(IMAGE, "sleep", "300")
    res = docker("exec", name, "echo", "hi")
    assert res.returncode == 0, describe(res)
    assert res.stdout == "hi\n"
    res = docker("exec", name, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert res.returncode == 3, describe(res)
    assert res.stdout == "out\n"
    assert res.stderr == "err\n"


def test_exec_interactive_passes_stdin_and_ends_at_eof(
    docker: DockerCLI, containers: Containers
) -> None:
    """`echo hi | docker exec -i C cat` prints hi and ends when stdin closes (half-close)."""
    name = containers.run_detached(IMAGE, "sleep", "300")
    res = docker("exec", "-i", name, "cat", input="hi\n", timeout=60)
    assert res.returncode == 0, describe(res)
    assert res.stdout == "hi\n"
    payload = "".join(f"{i:07d}\n" for i in range(131072))  # 1 MiB
    res = docker("exec", "-i", name, "sh", "-c", "wc -c; echo done >&2", input=payload, timeout=60)
    assert res.returncode == 0, describe(res)
    assert res.stdout.strip() == str(len(payload))
    assert res.stderr == "done\n"


def run_in_pty(docker: DockerCLI, command: str, timeout: float = 60) -> tuple[int, bytes]:
    """Run `command` (a shell string) under a pseudo-terminal via util-linux `script`."""
    res = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=docker.env(),
        timeout=timeout,
        check=False,
    )
    return res.returncode, res.stdout + res.stderr


def test_exec_with_tty_allocates_a_terminal(docker: DockerCLI, containers: Containers) -> None:
    """`docker exec -t` and `-it` (the CLI under a pty) run the command on a terminal."""
    name = containers.run_detached(IMAGE, "sleep", "300")
    code, out = run_in_pty(docker, f"/usr/local/bin/docker exec -t {name} echo tty-x")
    assert code == 0, out
    # The container's terminal turns "\n" into "\r\n" (then script's pty adds another "\r").
    assert b"tty-x\r" in out, out
    code, out = run_in_pty(
        docker, f"/usr/local/bin/docker exec -it {name} sh -c 'test -t 0 && tty; exit 4'"
    )
    assert code == 4, out
    assert b"/dev/pts/" in out, out


def test_attach_receives_output_until_the_container_exits(
    docker: DockerCLI, containers: Containers
) -> None:
    """`docker attach` streams a running container's output and ends with its exit status."""
    count = 25
    name = containers.run_detached(
        IMAGE, "sh", "-c", f"for i in $(seq 1 {count}); do echo att-$i; sleep 0.2; done; exit 5"
    )
    stream = docker.popen("attach", name)
    try:
        lines: list[str] = []
        while True:
            _, line = stream.next_line(timeout=60)
            if line is None:
                break
            lines.append(line)
        code = stream.wait(timeout=30)
    finally:
        stream.close()
    assert code == 5, f"attach exited {code}; stderr {stream.stderr!r}"
    # Lines printed before the attach connected are not replayed: expect a contiguous tail.
    assert len(lines) >= 5, lines
    first = int(lines[0].removeprefix("att-"))
    assert lines == [f"att-{i}" for i in range(first, count + 1)]


def test_events_streams_new_events_while_running(docker: DockerCLI, containers: Containers) -> None:
    """`docker events` delivers container events as they happen while it keeps streaming."""
    since = str(int(time.time()) - 1)
    stream = docker.popen(
        "events", "--since", since,
        "--filter", "type=container", "--filter", "event=create",
        "--format", "{{.Actor.Attributes.name}} {{.Action}}",
    )  # fmt: skip
    try:
        first, second = containers.name("e2e-ev"), containers.name("e2e-ev")
        docker.ok("create", "--name", first, IMAGE, "true")
        stream.wait_for(lambda line: line == f"{first} create", timeout=30)
        # The stream is demonstrably live: this event happens after the first arrived.
        docker.ok("create", "--name", second, IMAGE, "true")
        stream.wait_for(lambda line: line == f"{second} create", timeout=30)
        assert stream.proc.poll() is None, "docker events ended on its own"
    finally:
        stream.close()


def test_stats_no_stream_reports_usage(docker: DockerCLI, containers: Containers) -> None:
    """`docker stats --no-stream` prints one sample for the container and exits."""
    name = containers.run_detached(IMAGE, "sleep", "300")
    cid = docker.ok("inspect", "-f", "{{.Id}}", name).strip()
    # {{.Name}} is unusable: Podman 4.3's compat stats reports a wrong "name".
    res = docker("stats", "--no-stream", "--format", "{{.ID}}|{{.MemUsage}}|{{.CPUPerc}}", name)
    assert res.returncode == 0, describe(res)
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout
    short_id, mem, cpu = lines[0].split("|")
    assert cid.startswith(short_id), (short_id, cid)
    assert " / " in mem, mem
    assert cpu.endswith("%"), cpu


def test_cp_copies_files_into_and_out_of_a_container(
    docker: DockerCLI, containers: Containers, tmp_path: Path
) -> None:
    """`docker cp` in and back out round-trips a directory's bytes exactly."""
    name = containers.run_detached(IMAGE, "sleep", "300")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    data = os.urandom(3 * 1024 * 1024 + 17)
    (src / "data.bin").write_bytes(data)
    (src / "sub" / "note.txt").write_text("a note\n")
    res = docker("cp", str(src), f"{name}:/tmp/in")
    assert res.returncode == 0, describe(res)
    out = docker.ok(
        "exec", name, "sh", "-c", "sha256sum /tmp/in/data.bin; cat /tmp/in/sub/note.txt"
    )
    assert out == f"{hashlib.sha256(data).hexdigest()}  /tmp/in/data.bin\na note\n"

    dest = tmp_path / "out"
    dest.mkdir()
    res = docker("cp", f"{name}:/tmp/in", str(dest))
    assert res.returncode == 0, describe(res)
    assert (dest / "in" / "data.bin").read_bytes() == data
    assert (dest / "in" / "sub" / "note.txt").read_text() == "a note\n"

    res = docker("cp", f"{name}:/tmp/{unique('missing')}", str(dest))
    assert res.returncode == 1, describe(res)
    # dockerd: "Could not find the file ..."; Podman: "no such file or directory".
    assert any(s in res.stderr.lower() for s in ("could not find", "no such file")), res.stderr
