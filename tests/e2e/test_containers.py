"""The real Docker CLI through sockproxy: engine info and the container lifecycle."""

from __future__ import annotations

import json

import pytest

from .dockercli import IMAGE, Containers, DockerCLI, describe, run_many, unique, wait_until

pytestmark = pytest.mark.e2e


def test_version_shows_client_and_server(docker: DockerCLI, kind: str) -> None:
    """`docker version` shows the client and the engine's server section."""
    res = docker("version")
    assert res.returncode == 0, describe(res)
    assert "Client:" in res.stdout
    assert "Server:" in res.stdout
    fields = docker.ok(
        "version", "--format", "{{.Client.Version}} {{.Server.Version}} {{.Server.APIVersion}}"
    ).split()
    assert len(fields) == 3, fields
    client, server, api = fields
    assert client.startswith("28."), client
    assert server.startswith("4.3." if kind == "podman" else "20.10."), server
    assert api == "1.41", api


def test_info_reports_the_engine(docker: DockerCLI, kind: str) -> None:
    """`docker info` reports the engine's version, storage driver and runtime."""
    res = docker("info")
    assert res.returncode == 0, describe(res)
    assert "Server Version:" in res.stdout
    info = json.loads(docker.ok("info", "--format", "{{json .}}"))
    assert not info.get("ServerErrors"), info.get("ServerErrors")
    assert info["ServerVersion"].startswith("4.3." if kind == "podman" else "20.10.")
    assert info["Driver"] in ("overlay", "overlay2"), info["Driver"]
    assert "runc" in info["Runtimes"], info["Runtimes"]


def test_run_rm_prints_output_and_removes_container(docker: DockerCLI) -> None:
    """`docker run --rm IMG echo hello` prints hello, exits 0 and leaves no container."""
    name = unique("e2e-rm")
    res = docker("run", "--rm", "--name", name, IMAGE, "echo", "hello")
    assert res.returncode == 0, describe(res)
    assert res.stdout == "hello\n"

    def gone() -> bool:
        return docker.ok("ps", "-a", "-q", "--filter", f"name={name}").strip() == ""

    wait_until(gone, 30, f"--rm container {name} to be removed")


def test_run_exit_status_and_stderr_propagate(docker: DockerCLI, containers: Containers) -> None:
    """`docker run` exits with the container's status and relays its stderr separately.

    Without --rm: Podman 4.3 answers `wait?condition=removed` (what the CLI sends for
    `run --rm`) with status 0 whatever the container returned, even without a proxy.
    """
    name = containers.name()
    res = docker("run", "--name", name, IMAGE, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert res.returncode == 7, describe(res)
    assert res.stdout == "out\n"
    assert res.stderr == "err\n"


def test_short_lived_container_output_is_never_lost(docker: DockerCLI) -> None:
    """Output of containers that exit at once arrives whole (attach-before-start race), 10x."""
    seq = "".join(f"{i}\n" for i in range(1, 2001))
    for attempt in range(10):
        if attempt % 2:
            res = docker("run", "--rm", IMAGE, "cat", "/etc/passwd")
            expected = "root:x:0:0:root:/root:/bin/sh\n"
        else:
            res = docker("run", "--rm", IMAGE, "seq", "1", "2000")
            expected = seq
        assert res.returncode == 0, f"attempt {attempt}: {describe(res)}"
        assert res.stdout == expected, f"attempt {attempt}: got {res.stdout[:200]!r}"


def test_run_detached_container_is_listed_by_ps(docker: DockerCLI, containers: Containers) -> None:
    """`docker run -d` prints the container id and `docker ps` lists it as Up."""
    name = containers.name()
    res = docker("run", "-d", "--name", name, IMAGE, "sleep", "300")
    assert res.returncode == 0, describe(res)
    cid = res.stdout.strip()
    assert len(cid) == 64, cid
    assert set(cid) <= set("0123456789abcdef"), cid
    out = docker.ok("ps", "--no-trunc", "--filter", f"name={name}",
                    "--format", "{{.ID}}|{{.Names}}|{{.Image}}|{{.Status}}")  # fmt: skip
    lines = out.splitlines()
    assert len(lines) == 1, out
    ps_id, ps_name, ps_image, status = lines[0].split("|")
    assert (ps_id, ps_name) == (cid, name)
    assert ps_image in (IMAGE, IMAGE.removesuffix(":latest")), ps_image
    assert status.startswith("Up"), status
    assert cid in docker.ok("ps", "-q", "--no-trunc").split()


def test_inspect_reports_state_and_config(docker: DockerCLI, containers: Containers) -> None:
    """`docker inspect` shows a running container's state, name and command; unknown → error."""
    name = containers.run_detached(IMAGE, "sleep", "300")
    out = docker.ok(
        "inspect", "-f", "{{.State.Running}}|{{.Name}}|{{json .Config.Cmd}}", name
    ).strip()
    running, ctr_name, cmd = out.split("|")
    assert running == "true"
    assert ctr_name.lstrip("/") == name
    assert json.loads(cmd) == ["sleep", "300"]
    image_id = docker.ok("inspect", "--type", "image", "-f", "{{.Id}}", IMAGE).strip()
    assert image_id.startswith("sha256:"), image_id

    res = docker("inspect", unique("e2e-missing"))
    assert res.returncode == 1, describe(res)
    assert "no such" in res.stderr.lower(), res.stderr


def test_stop_ends_a_running_container(docker: DockerCLI, containers: Containers) -> None:
    """`docker stop` sends SIGTERM; the container exits 0 and is no longer running."""
    name = containers.run_detached(
        IMAGE, "sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done'
    )
    res = docker("stop", "-t", "20", name, timeout=60)
    assert res.returncode == 0, describe(res)
    assert res.stdout.strip() == name
    state = docker.ok("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", name).split()
    assert state == ["false", "0"], state


def test_rm_refuses_running_container_and_removes_stopped_one(
    docker: DockerCLI, containers: Containers
) -> None:
    """`docker rm` removes a created container, refuses a running one, and `rm -f` kills it."""
    created = containers.name()
    docker.ok("create", "--name", created, IMAGE, "true")
    res = docker("rm", created)
    assert res.returncode == 0, describe(res)
    assert res.stdout.strip() == created
    res = docker("inspect", created)
    assert res.returncode == 1, describe(res)
    assert "no such" in res.stderr.lower(), res.stderr

    running = containers.run_detached(IMAGE, "sleep", "300")
    res = docker("rm", running)
    assert res.returncode == 1, describe(res)
    assert "running" in res.stderr.lower(), res.stderr
    res = docker("rm", "-f", running)
    assert res.returncode == 0, describe(res)
    assert res.stdout.strip() == running
    assert docker.ok("ps", "-a", "-q", "--filter", f"name={running}").strip() == ""


def test_volume_create_ls_rm_and_data_persists(docker: DockerCLI) -> None:
    """`docker volume create/ls/inspect/rm`; data written by one container is read by the next."""
    vol = unique("e2e-vol")
    try:
        assert docker.ok("volume", "create", vol).strip() == vol
        assert vol in docker.ok("volume", "ls", "--format", "{{.Name}}").split()
        assert docker.ok("volume", "inspect", "-f", "{{.Name}}", vol).strip() == vol
        docker.ok("run", "--rm", "-v", f"{vol}:/data", IMAGE,
                  "sh", "-c", "echo persisted > /data/f")  # fmt: skip
        out = docker.ok("run", "--rm", "-v", f"{vol}:/data", IMAGE, "cat", "/data/f")
        assert out == "persisted\n"
        res = docker("volume", "rm", vol)
        assert res.returncode == 0, describe(res)
        assert res.stdout.strip() == vol
        assert vol not in docker.ok("volume", "ls", "--format", "{{.Name}}").split()
    finally:
        docker("volume", "rm", "-f", vol)


def test_network_ls_lists_the_engine_networks(docker: DockerCLI, kind: str) -> None:
    """`docker network ls` lists the engine's default network; `network inspect` shows it."""
    res = docker("network", "ls", "--format", "{{.Name}}")
    assert res.returncode == 0, describe(res)
    names = res.stdout.split()
    # Podman's compat API calls its default network ("podman") "bridge".
    default = "bridge" if kind == "podman" else "none"
    assert default in names, names
    info = json.loads(docker.ok("network", "inspect", default))
    assert isinstance(info, list), info
    assert info[0]["Name"] == default, info


def test_twenty_concurrent_runs_all_succeed(docker: DockerCLI) -> None:
    """20 concurrent `docker run --rm IMG echo N` through the proxy all print their own N."""
    cmds = [["run", "--rm", IMAGE, "echo", f"n-{i}"] for i in range(20)]
    results = run_many(cmds, docker, timeout=240)
    failures = [describe(r) for r in results if r.returncode != 0]
    assert not failures, "\n".join(failures)
    assert [r.stdout for r in results] == [f"n-{i}\n" for i in range(20)]
