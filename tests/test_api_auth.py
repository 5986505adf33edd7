"""The auth matrix, built from the OpenAPI schema: every route but the public two refuses a missing or
wrong token with 401 problem+json, and lets the right one through. Plus the brake on repeated failures."""

from __future__ import annotations

import httpx
import pytest

from agent.server.api import create_app
from agent.server.auth import AuthPolicy

PUBLIC = {("GET", "/v1/health"), ("GET", "/metrics")}
# Generous: the matrix makes many failures from 127.0.0.1 on purpose; the brake is tested below.
MATRIX_POLICY = AuthPolicy(free=10_000, limit=20_000)


def operations(schema: dict) -> list[tuple[str, str, dict]]:
    ops = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "delete", "patch"):
                ops.append((method.upper(), path, op))
    return ops


def concrete(path: str) -> str:
    return path.replace("{job_id}", "0123456789abcdef0123456789abcdef")


def call(client: httpx.Client, method: str, path: str, headers: dict) -> httpx.Response:
    """One request; an SSE stream is opened and closed as soon as its status line is in."""
    body = {"uri": "demo:?seed=3"} if method in ("PUT", "POST") else None
    with client.stream(method, concrete(path), headers=headers, json=body) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
        return response


def assert_unauthorized(response: httpx.Response, what: str) -> None:
    assert response.status_code == 401, what
    assert response.headers["content-type"] == "application/problem+json", what
    assert response.headers["www-authenticate"].startswith("Bearer"), what
    problem = response.json()
    assert problem["status"] == 401 and problem["title"] == "Unauthorized", what
    assert "fieldtui-agent token" in problem["detail"], what


@pytest.fixture
def agent(inproc_agent):
    return inproc_agent(auth_policy=MATRIX_POLICY)


def test_the_schema_declares_exactly_the_public_routes(agent):
    schema = create_app(agent.service).openapi()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    public = {(m, p) for m, p, op in operations(schema) if op.get("security") == []}
    assert public == PUBLIC
    for method, path, op in operations(schema):
        for code, response in op["responses"].items():
            if code[0] in "45":
                assert list(response["content"]) == ["application/problem+json"], (method, path, code)
    # and the document the agent serves is that one (it needs the token too)
    with agent.client() as c:
        served = c.get("/openapi.json").json()
    assert {(m, p) for m, p, _ in operations(served)} == {(m, p) for m, p, _ in operations(schema)}


def test_every_protected_route_refuses_missing_and_wrong_tokens_and_accepts_the_right_one(agent):
    schema = create_app(agent.service).openapi()
    ops = [(m, p) for m, p, _ in operations(schema) if (m, p) not in PUBLIC]
    assert len(ops) >= 11  # device, status, events, jobs x3, pipeline x4, logs ...
    wrong = {"Authorization": "Bearer " + "x" * len(agent.token)}
    near = {"Authorization": "Bearer " + agent.token[:-1] + ("A" if agent.token[-1] != "A" else "B")}
    other_scheme = {"Authorization": f"Basic {agent.token}"}
    with httpx.Client(base_url=agent.url, timeout=30) as client:
        for method, path in ops:
            assert_unauthorized(call(client, method, path, {}), f"{method} {path} without a token")
            for headers in (wrong, near, other_scheme):
                assert_unauthorized(call(client, method, path, headers), f"{method} {path} with {headers}")
            ok = call(client, method, path, agent.headers)
            assert ok.status_code not in (401, 403, 429), f"{method} {path} refused the right token"
            assert ok.status_code < 500, f"{method} {path} -> {ok.status_code}"


def test_public_routes_need_no_token(agent):
    with httpx.Client(base_url=agent.url, timeout=10) as client:
        assert client.get("/v1/health").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "inference_latency_seconds" in metrics.text
        # public means those methods on those paths, nothing more
        assert client.post("/v1/health").status_code == 401
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/docs").status_code == 401
        assert client.get("/v1/no-such-route").status_code == 401  # no map of routes without a token


def test_repeated_failures_are_slowed_then_refused_with_retry_after(inproc_agent):
    policy = AuthPolicy(window=60, free=2, base_delay=0.01, max_delay=0.02, limit=5)
    agent = inproc_agent(auth_policy=policy)
    bad = {"Authorization": "Bearer not-the-token"}
    with httpx.Client(base_url=agent.url, timeout=10) as client:
        codes = [client.get("/v1/status", headers=bad).status_code for _ in range(5)]
        assert codes == [401] * 5
        refused = client.get("/v1/status", headers=bad)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "too many failed token attempts" in refused.json()["detail"]
        # past the limit even the right token waits: a guesser learns nothing from the answer
        assert client.get("/v1/status", headers=agent.headers).status_code == 429
        # the public routes stay open (health checks and scrapes must not be locked out)
        assert client.get("/v1/health").status_code == 200
        metrics = client.get("/metrics").text
    assert "fieldtui_agent_auth_failures_total 5.0" in metrics
    assert "fieldtui_agent_auth_throttled_total 2.0" in metrics
    logged = agent.service.logs.query(level="WARNING").lines
    refusals = [ln for ln in logged if ln.logger == "fieldtui.agent.auth"]
    assert refusals and all("not-the-token" not in ln.message for ln in refusals)
    assert len(refusals) == 2  # the first failure and the start of the slow-down, not one per request
