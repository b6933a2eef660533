"""Classify stage: the endpoint a request is for, whatever its prefix."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockproxy.routes import Api, classify, clean_path


@pytest.mark.parametrize(
    ("method", "target", "operation", "api", "hijack"),
    [
        ("GET", "/_ping", "system.ping", Api.DOCKER, False),
        ("HEAD", "/v1.41/_ping", "system.ping", Api.DOCKER, False),
        (
            "POST",
            "/v1.41/containers/abc/attach?stream=1&stdout=1",
            "container.attach",
            Api.DOCKER,
            True,
        ),
        ("POST", "/containers/abc/attach", "container.attach", Api.DOCKER, True),
        ("POST", "/v1.24/exec/123/start", "exec.start", Api.DOCKER, True),
        ("POST", "/v4.3.1/libpod/exec/123/start", "exec.start", Api.LIBPOD, True),
        ("POST", "/v4.3.1/libpod/containers/abc/attach", "container.attach", Api.LIBPOD, True),
        ("POST", "/session", "build.session", Api.DOCKER, True),
        ("GET", "/v1.41/containers/json", "unknown", Api.DOCKER, False),
        ("GET", "/v1.41/exec/123/start", "unknown", Api.DOCKER, False),
    ],
)
def test_classify(method: str, target: str, operation: str, api: Api, hijack: bool) -> None:
    route = classify(method, target)
    assert (route.operation, route.api, route.hijack) == (operation, api, hijack)


def test_version_and_query_are_split_off() -> None:
    route = classify("POST", "/v1.41/containers/abc/attach?stream=1")
    assert (route.version, route.path, route.query) == (
        "1.41",
        "/containers/abc/attach",
        "stream=1",
    )


@pytest.mark.parametrize(
    "target",
    [
        "//exec//x/start",
        "/v1.41/./exec/x/start",
        "/v1.41/containers/../exec/x/start",
        "/v1.41/exec/x/start/",
        "/v1.41/%65xec/x/start",
    ],
)
def test_spellings_the_engine_cleans_reach_the_same_endpoint(target: str) -> None:
    assert classify("POST", target).operation == "exec.start"


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [("/", "/"), ("//a//b/", "/a/b"), ("/a/./b/../c", "/a/c"), ("/../a", "/a"), ("///", "/")],
)
def test_clean_path_matches_go_path_clean(path: str, cleaned: str) -> None:
    assert clean_path(path) == cleaned


@given(st.text(alphabet="/.ab%", max_size=30))
def test_clean_path_is_idempotent_and_absolute(suffix: str) -> None:
    once = clean_path("/" + suffix)
    assert once.startswith("/")
    assert clean_path(once) == once
