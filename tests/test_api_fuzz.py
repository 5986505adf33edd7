"""A property-based fuzz of the whole API, driven by its own OpenAPI schema (hypothesis).

For every route and method in the schema, plus unknown paths and methods: random path parameters,
query values (declared names and made-up ones), headers and bodies (schema-shaped, arbitrary JSON, or
not JSON at all), always with the right token. Whatever comes in, the agent answers below 500, never
with a traceback, and every error is problem+json whose ``status`` matches the response.
"""

from __future__ import annotations

import os
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.server.api import create_app
from fieldtui.protocol import Problem

printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
header_values = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)
anything = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["", "0", "-1", "1e309", "nan", "DEBUG", "warning", "sample,job", "null", "[]"]),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
source_uris = st.one_of(
    st.sampled_from(
        [
            "demo:",
            "demo:?seed=2",
            "demo:?faults=blur@1",
            "demo:?faults=nope",
            "demo:?fps=abc",
            "file:",
            "/nonexistent/video.mp4",
            "usb:x",
            "gopher://x",
            "",
            "   ",
            "demo:?size=0x0",
            "demo:?size=99999x99999",
        ]
    ),
    st.text(max_size=40),
)


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "delete", "patch")
    ]


@st.composite
def requests(draw, ops: list[tuple[str, str, dict]]) -> dict:
    method, path, op = draw(st.sampled_from(ops))
    kind = draw(st.sampled_from(["declared", "declared", "declared", "wrong-method", "unknown-path"]))
    if kind == "wrong-method":
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
    if kind == "unknown-path":
        path = "/v1/" + quote(draw(st.text(min_size=1, max_size=20)), safe="")
    params = {}
    for p in op.get("parameters", []):
        if p["in"] == "path":
            value = draw(st.one_of(st.text(min_size=1, max_size=70), st.just("0" * 32)))
            path = path.replace("{" + p["name"] + "}", quote(value, safe="") or "x")
        elif p["in"] == "query" and draw(st.booleans()):
            params[p["name"]] = draw(anything)
    params.update(draw(st.dictionaries(printable, anything, max_size=2)))
    headers = {}
    if draw(st.booleans()):
        headers["Last-Event-ID"] = draw(header_values)
    body_kind = draw(st.sampled_from(["none", "shaped", "json", "bytes"]))
    content, json_body = None, None
    if body_kind == "shaped":
        json_body = {
            "uri": draw(source_uris),
            **draw(st.dictionaries(st.text(max_size=5), json_values, max_size=2)),
        }
    elif body_kind == "json":
        json_body = draw(json_values)
    elif body_kind == "bytes":
        content = draw(st.binary(max_size=64))
        headers["Content-Type"] = draw(
            st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"])
        )
    return {
        "method": method,
        "url": path,
        "params": params,
        "headers": headers,
        "json": json_body,
        "content": content,
    }


def test_no_input_makes_the_agent_fail_or_leak(agent_inproc):
    ops = _operations(create_app(agent_inproc.service).openapi())
    assert len(ops) >= 13
    seen: set[tuple[str, int]] = set()

    with agent_inproc.client(timeout=httpx.Timeout(20.0)) as client:

        @settings(
            max_examples=int(os.environ.get("FUZZ_EXAMPLES", "400")),
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(req=requests(ops))
        def check(req: dict) -> None:
            kwargs = {k: v for k, v in req.items() if v is not None and k not in ("method", "url")}
            if "json" in kwargs and "content" in kwargs:
                del kwargs["json"]
            with client.stream(req["method"], req["url"], **kwargs) as response:
                streaming = response.headers.get("content-type", "").startswith("text/event-stream")
                if not streaming:
                    response.read()
                seen.add((req["method"] + " " + req["url"].split("?")[0][:20], response.status_code))
                assert response.status_code < 500, f"{req} -> {response.status_code}: {response.text}"
                if streaming:
                    assert response.status_code == 200
                    return
                assert "Traceback" not in response.text, req
                if response.status_code >= 400:
                    assert response.headers["content-type"] == "application/problem+json", req
                    problem = Problem.model_validate_json(response.content)
                    assert problem.status == response.status_code
                    assert problem.detail.strip(), req

        check()

    codes = {code for _, code in seen}
    assert {200, 404, 405, 422} <= codes  # the fuzz reached success and each error family
    # after all that, the agent still serves and its pipeline still runs or can be started
    with agent_inproc.client() as c:
        assert c.get("/v1/health").status_code == 200
        assert c.post("/v1/pipeline/start").json()["state"] in ("starting", "running", "reconnecting")
