"""Every error is application/problem+json with a detail a technician can act on; never a traceback."""

from __future__ import annotations

import pytest

from agent.server.api.problems import INTERNAL_DETAIL


def problem_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


@pytest.fixture
def client(agent_inproc):
    with agent_inproc.client() as c:
        yield c


def test_unknown_route_and_wrong_method(client):
    body = problem_of(client.get("/v1/nothing-here"), 404)
    assert body["detail"] == "no route GET /v1/nothing-here on this agent; GET /openapi.json lists the routes"
    wrong = client.delete("/v1/status")
    body = problem_of(wrong, 405)
    assert body["detail"] == "DELETE is not allowed on /v1/status; allowed: GET"
    assert wrong.headers["allow"] == "GET"


def test_validation_errors_are_one_readable_line(client):
    body = problem_of(client.get("/v1/logs", params={"limit": "lots"}), 422)
    assert body["detail"].startswith("query parameter 'limit': Input should be a valid integer")
    assert "(got 'lots')" in body["detail"]
    body = problem_of(client.get("/v1/jobs", params={"limit": 0}), 422)
    assert "query parameter 'limit'" in body["detail"] and "greater than or equal to 1" in body["detail"]
    body = problem_of(
        client.put("/v1/pipeline/source", content=b"{not json", headers={"content-type": "application/json"}),
        422,
    )
    assert body["detail"].startswith("request body is not valid JSON")
    body = problem_of(client.put("/v1/pipeline/source", json={"url": "demo:"}), 422)
    assert body["detail"].startswith("body 'uri': Field required")
    body = problem_of(client.get("/v1/logs", params={"level": "LOUD"}), 422)
    assert body["detail"] == "unknown log level 'LOUD'; use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    body = problem_of(client.get("/v1/events", params={"events": "sample,gossip"}), 422)
    assert "unknown event name(s) gossip" in body["detail"]


def test_agent_errors_keep_their_status_and_message(client):
    body = problem_of(client.get("/v1/jobs/" + "f" * 32), 404)
    assert body["detail"].startswith(f"no job with id '{'f' * 32}'")
    assert body["instance"] == "/v1/jobs/" + "f" * 32


def test_a_bad_source_uri_is_refused_and_the_old_source_keeps_running(client):
    before = client.get("/v1/status").json()
    body = problem_of(client.put("/v1/pipeline/source", json={"uri": "gopher://camera/1"}), 422)
    assert "unknown source scheme 'gopher'" in body["detail"]
    body = problem_of(client.put("/v1/pipeline/source", json={"uri": "demo:?faults=smoke@3"}), 422)
    assert "bad demo fault" in body["detail"]
    after = client.get("/v1/status").json()
    assert after["source"]["uri"] == before["source"]["uri"] == "demo:"
    assert after["state"] == "running"
    assert client.get("/v1/jobs").json()["jobs"] == []  # nothing was queued


def test_an_unforeseen_error_is_a_500_problem_and_the_traceback_stays_in_the_log(agent_inproc, client):
    def broken():
        raise RuntimeError("secret internals at 0xdeadbeef")

    agent_inproc.service.status = broken  # a bug anywhere below a route
    body = problem_of(client.get("/v1/status"), 500)
    assert body["detail"] == INTERNAL_DETAIL
    assert "0xdeadbeef" not in body["detail"]
    logged = client.get("/v1/logs", params={"level": "ERROR"}).json()["lines"]
    assert any("unhandled error in GET /v1/status" in ln["message"] for ln in logged)
    # the server keeps serving
    assert client.get("/v1/health").status_code == 200


def test_conflicts_say_what_to_do(agent_inproc, client):
    job = client.post("/v1/pipeline/restart").json()
    assert agent_inproc.service.jobs.wait(job["id"], 20).state == "succeeded"
    body = problem_of(client.post(f"/v1/jobs/{job['id']}/cancel"), 409)
    assert body["detail"] == f"job {job['id']} already succeeded; there is nothing to cancel"
