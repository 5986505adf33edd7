"""The OpenAPI schema says what the API does (tests/test_api_schemathesis.py fuzzes it; these are the
faults it found, one by one): every status an operation answers is declared, limits are in the schema,
405 names every method of the path, a sub-route's path is a 405 not a bad name, and booleans are strict."""

from __future__ import annotations

import pytest

from agent.server.api import create_app


@pytest.fixture
def schema(agent_inproc) -> dict:
    return create_app(agent_inproc.service).openapi()


def test_operations_declare_what_they_answer(schema: dict) -> None:
    paths = schema["paths"]
    for path, item in paths.items():
        for method, op in item.items():
            codes = set(op["responses"])
            if path in ("/v1/health", "/metrics"):
                continue
            assert {"401", "429", "503"} <= codes, (method, path)
            if "{" in path:
                assert "404" in codes, (method, path)
            if "requestBody" in op:
                assert "400" in codes, (method, path)
            if method in ("post", "put", "delete"):
                assert {"409", "507"} <= codes, (method, path)
    assert "409" in paths["/v1/jobs/{job_id}/cancel"]["post"]["responses"]
    assert "404" in paths["/v1/jobs/{job_id}"]["get"]["responses"]


def test_limits_are_in_the_schema(schema: dict) -> None:
    version = next(
        p for p in schema["paths"]["/v1/models/{version}"]["get"]["parameters"] if p["name"] == "version"
    )
    assert version["schema"]["maxLength"] == 64 and version["schema"]["pattern"].startswith("^[A-Za-z0-9]")
    level = next(p for p in schema["paths"]["/v1/logs"]["get"]["parameters"] if p["name"] == "level")
    import re

    pattern = level["schema"]["pattern"]
    assert re.fullmatch(pattern, "Warning") and not re.fullmatch(pattern, "LOUD")
    events = next(p for p in schema["paths"]["/v1/events"]["get"]["parameters"] if p["name"] == "events")
    assert "sample" in events["schema"]["pattern"] and "health" in events["schema"]["pattern"]
    put = schema["paths"]["/v1/models/{version}"]["put"]
    sha = next(p for p in put["parameters"] if p["name"] == "X-Model-Sha256")
    assert sha["required"] and sha["in"] == "header"


def test_405_names_every_method_and_a_sub_route_is_not_a_bad_name(agent_inproc) -> None:
    with agent_inproc.client() as c:
        for path, allowed in (
            ("/v1/forwarding", "GET, PUT"),
            ("/v1/benchmarks", "GET, POST"),
            ("/v1/models/v1", "DELETE, GET, PUT"),
            ("/v1/models/v1/activate", "POST"),
        ):
            r = c.request("PATCH", path)
            assert r.status_code == 405 and r.headers["Allow"] == allowed, (path, r.headers, r.text)
            assert allowed in r.json()["detail"]
        for method in ("PUT", "GET", "DELETE"):
            r = c.request(
                method, "/v1/models/v1/activate", content=b"x", headers={"X-Model-Sha256": "0" * 64}
            )
            assert r.status_code == 405 and r.headers["Allow"] == "POST", (method, r.text)


def test_booleans_and_numbers_are_strict(agent_inproc) -> None:
    with agent_inproc.client() as c:
        r = c.post("/v1/engines/rebuild", json={"activate": 0})
        assert r.status_code == 422 and "activate" in r.json()["detail"]
        r = c.post("/v1/engines/rebuild", json={"accuracy_frames": False})
        assert r.status_code == 422 and "accuracy_frames" in r.json()["detail"]
        r = c.put("/v1/forwarding", json={"enabled": 1})
        assert r.status_code == 422 and "enabled" in r.json()["detail"]
        r = c.post("/v1/forwarding/test", json={"timeout_s": True})
        assert r.status_code == 422
        assert not [j for j in c.get("/v1/jobs").json()["jobs"] if j["kind"] == "engine_rebuild"]
