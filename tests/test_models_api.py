"""``/v1/models`` against a real agent on 127.0.0.1 (in-process uvicorn, real onnxruntime, demo: source):
uploads and every way they are refused, activation with its health check and probation, automatic and
manual rollback, removal, and results that keep flowing while a model is swapped in."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from fieldtui.protocol import ModelVersion
from tests import storemodels as sm
from tests.storeclient import (
    ModelEvents,
    activate,
    listing,
    put_head,
    raw_request,
    upload,
    wait_for,
    wait_job,
)

FPS = 20
SOURCE = f"demo:?fps={FPS}&size=320x240"


@pytest.fixture
def store_agent(inproc_agent, tmp_path):
    """``store_agent(**models_settings)``: an in-process agent whose config.toml has that [models] table."""
    counter = iter(range(100))

    def start(source: str = SOURCE, **settings):
        home = tmp_path / f"store-home-{next(counter)}"
        home.mkdir(mode=0o700)
        table = {"probation_s": 1.5, "probation_min_frames": 5, **settings}
        lines = [f"{k} = {v!r}".replace("'", '"') for k, v in table.items()]
        (home / "config.toml").write_text("[models]\n" + "\n".join(lines) + "\n")
        return inproc_agent(home, source=source)

    return start


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return sm.make(tmp_path / "files", "v1", "v2", "weak", "nan", "slow")


def staged(agent) -> list[str]:
    staging = agent.home / "models" / ".staging"
    return [p.name for p in staging.iterdir()] if staging.exists() else []


def serving_path(client) -> str:
    return client.get("/v1/status").json()["model"]["path"]


def test_upload_is_stored_then_idempotent_and_other_bytes_conflict(store_agent, files):
    agent = store_agent()
    with agent.client() as c:
        first = upload(c, files["v1"], "v1")
        assert first.status_code == 201, first.text
        stored = ModelVersion.model_validate(first.json())
        assert stored.manifest.sha256 == sm.sha256(files["v1"]) and stored.state == "inactive"
        assert stored.manifest.source == "upload from 127.0.0.1"
        again = upload(c, files["v1"], "v1")
        assert again.status_code == 200 and again.json()["manifest"] == first.json()["manifest"]
        other = upload(c, files["v2"], "v1")
        assert other.status_code == 409 and "already on the device with other bytes" in other.json()["detail"]
        assert other.headers["content-type"] == "application/problem+json"
        assert [v.version for v in listing(c).versions] == ["v1"]
        assert c.get("/v1/models/v1").json()["manifest"]["sha256"] == sm.sha256(files["v1"])
        assert c.get("/v1/models/v9").status_code == 404


def test_refusals_decided_from_the_headers_alone(store_agent, files):
    agent = store_agent(max_upload_mb=1)
    sha = sm.sha256(files["v1"])
    head = lambda target, **h: put_head(agent.url, target, agent.token, h)  # noqa: E731
    # oversize: answered 413 while the client has not sent a byte of the body
    status, body = raw_request(
        agent.url, head("/v1/models/big", **{"Content-Length": str(5 << 20), "X-Model-Sha256": sha})
    )
    assert (
        status == 413
        and "over this device's limit" in body["detail"]
        and "nothing was read" in body["detail"]
    )
    # no Content-Length (a chunked body): 411
    chunked = head("/v1/models/v1", **{"Transfer-Encoding": "chunked", "X-Model-Sha256": sha})
    assert raw_request(agent.url, chunked, b"5\r\nhello\r\n0\r\n\r\n")[0] == 411
    # no sha256: 400
    status, body = raw_request(agent.url, head("/v1/models/v1", **{"Content-Length": "5"}), b"hello")
    assert status == 400 and "X-Model-Sha256" in body["detail"]
    with agent.client() as c:
        assert listing(c).versions == [] and staged(agent) == []


@pytest.mark.parametrize(
    "target",
    [
        "/v1/models/..",
        "/v1/models/%2E%2E",
        "/v1/models/a%2Fb",
        "/v1/models/a%2fb",
        "/v1/models/a/b",
        "/v1/models/..%2F..%2Fetc",
        "/v1/models/a%00b",
        "/v1/models/" + "v" * 65,
        "/v1/models/current",
    ],
)
def test_path_like_version_names_are_422(agent_for_names, files, target):
    agent = agent_for_names
    data = files["v1"].read_bytes()
    headers = {"Content-Length": str(len(data)), "X-Model-Sha256": sm.sha256(files["v1"])}
    status, body = raw_request(agent.url, put_head(agent.url, target, agent.token, headers), data)
    assert status == 422, body
    assert "version name" in body["detail"] and "use 1-64 letters" in body["detail"]
    models = agent.home / "models"
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == []
    assert not (agent.home / "etc").exists()


@pytest.fixture(scope="module")
def agent_for_names(tmp_path_factory):
    """One agent for the whole name matrix (module scope: started once)."""
    from agent.core.config import load_config
    from agent.server.app import bind_socket, make_server
    from agent.server.service import AgentService
    from tests.conftest import RunningAgent

    home = tmp_path_factory.mktemp("names-home")
    model = sm.detector(tmp_path_factory.mktemp("m") / "tiny.onnx")
    config = load_config(
        home=home,
        env={},
        overrides={"host": "127.0.0.1", "port": 0, "mdns": False, "model": str(model), "source": SOURCE},
    )
    service = AgentService.create(config)
    service.start()
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(service, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30)
    yield RunningAgent(url=f"http://127.0.0.1:{sock.getsockname()[1]}", token=service.token, home=home)
    server.should_exit = True
    thread.join(10)
    service.close()


def test_wrong_sha256_is_refused_with_both_hashes(store_agent, files):
    agent = store_agent()
    claimed = "0123456789abcdef" * 4
    with agent.client() as c:
        r = upload(c, files["v1"], "v1", sha=claimed)
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert f"expected {claimed}" in detail and f"got {sm.sha256(files['v1'])}" in detail
        assert "discarded" in detail
        assert listing(c).versions == [] and staged(agent) == []


def test_files_that_are_not_detectors_are_422_saying_why(store_agent, tmp_path):
    agent = store_agent()
    text = tmp_path / "readme.onnx"
    text.write_text("model goes here\n")
    classifier = sm.classifier(tmp_path / "cls.onnx")
    with agent.client() as c:
        r = upload(c, text, "t1")
        assert r.status_code == 422 and r.json()["detail"] == "t1 is not an ONNX model: it is plain text"
        r = upload(c, classifier, "c1")
        assert r.status_code == 422 and r.json()["detail"].startswith("c1 is not a usable detector: ")
        assert listing(c).versions == [] and staged(agent) == []


def test_engine_and_hef_files_need_their_backend_on_the_device(store_agent, files):
    agent = store_agent()
    data = files["v1"].read_bytes()
    with agent.client() as c:
        for fmt in ("engine", "hef"):
            headers = {"X-Model-Sha256": sm.sha256(files["v1"]), "X-Model-Format": fmt}
            r = c.put(f"/v1/models/{fmt}1", content=data, headers=headers)
            assert r.status_code == 422
            assert r.json()["detail"].startswith(f"{fmt}1 is a .{fmt} model, which this device cannot load (")
            assert r.json()["detail"].endswith("push the .onnx instead")
        r = c.put(
            "/v1/models/x1",
            content=data,
            headers={"X-Model-Sha256": sm.sha256(files["v1"]), "X-Model-Format": "pt"},
        )
        assert r.status_code == 422 and "unknown model format 'pt'" in r.json()["detail"]
        assert listing(c).versions == [] and staged(agent) == []


def test_an_upload_cut_off_half_way_leaves_no_trace(store_agent, files):
    agent = store_agent()
    data = files["v1"].read_bytes()
    with agent.client() as c:
        before = serving_path(c)
        headers = {"Content-Length": str(len(data)), "X-Model-Sha256": sm.sha256(files["v1"])}
        raw_request(
            agent.url,
            put_head(agent.url, "/v1/models/v1", agent.token, headers),
            data[: len(data) // 2],
            close_after_send=True,
        )
        row = wait_for(lambda: next((h for h in listing(c).history if h.outcome != "started"), None))
        assert (row.action, row.version, row.outcome) == ("upload", "v1", "refused")
        assert "client disconnected" in row.reason
        assert listing(c).versions == [] and staged(agent) == []
        assert serving_path(c) == before
        assert upload(c, files["v1"], "v1").status_code == 201  # and the same name works afterwards


def test_activation_swaps_without_restart_announces_and_records_it(store_agent, files):
    agent = store_agent()
    service = agent.service
    announced: list[str] = []
    service.model_listeners.append(lambda info: announced.append(info.version))  # what mDNS TXT follows
    with agent.client() as c, ModelEvents(agent) as events:
        started_at = c.get("/v1/status").json()["started_at"]
        assert upload(c, files["v1"], "v1").status_code == 201
        job = activate(c, "v1")
        assert job.state == "succeeded", job.error
        assert job.result["outcome"] == "probation" and job.result["details"]["health"]["live_frames"] is True
        event = events.wait(lambda e: e.get("version") == "v1")
        assert event["change"] == "activated" and event["previous"] is None
        status = c.get("/v1/status").json()
        assert status["model"]["version"] == "v1" and status["started_at"] == started_at  # no restart
        assert announced == ["v1"]
        assert (agent.home / "models" / "current").readlink() == Path("v1")
        row = wait_for(lambda: listing(c).history[0].outcome == "good" and listing(c).history[0])
        assert row.details["probation"]["frames"] >= 5
        v = listing(c).versions[0]
        assert (v.version, v.state, v.current, v.serving) == ("v1", "serving", True, True)


def test_nan_and_slow_models_fail_activation_and_the_old_model_keeps_serving(store_agent, files):
    agent = store_agent(probation_s=0)
    with agent.client() as c:
        for name in ("v1", "nan", "slow"):
            assert upload(c, files[name], name).status_code == 201
        assert activate(c, "v1").state == "succeeded"
        frames = c.get("/v1/status").json()["sample"]["frames_total"]
        nan = activate(c, "nan")
        assert nan.state == "failed" and "nan gives NaN values on live frames" in nan.error
        assert "v1 keeps serving" in nan.error
        slow = activate(c, "slow", timeout=120)
        assert (
            slow.state == "failed" and "slow is too slow" in slow.error and "v1 keeps serving" in slow.error
        )
        assert c.get("/v1/status").json()["model"]["version"] == "v1"
        wait_for(lambda: c.get("/v1/status").json()["sample"]["frames_total"] > frames + 10)  # still running
        history = listing(c).history
        assert [(h.version, h.outcome) for h in history[:2]] == [("slow", "failed"), ("nan", "failed")]
        assert (agent.home / "models" / "current").readlink() == Path("v1")


def test_confidence_collapse_on_live_frames_is_rolled_back_by_probation(store_agent, files):
    agent = store_agent(probation_s=1.5)
    with agent.client() as c, ModelEvents(agent) as events:
        for name in ("v1", "weak"):
            assert upload(c, files[name], name).status_code == 201
        assert activate(c, "v1").state == "succeeded"
        wait_for(lambda: listing(c).history[0].outcome == "good")
        job = activate(c, "weak")
        assert job.state == "succeeded" and job.result["outcome"] == "probation"  # it loads and looks healthy
        back = events.wait(lambda e: e.get("change") == "auto_rolled_back")
        assert back["version"] == "v1" and back["previous"] == "weak"
        assert "confidence collapsed on live frames" in back["reason"]
        models = wait_for(lambda: (m := listing(c)).serving.version == "v1" and m)
        weak_row = next(h for h in models.history if h.version == "weak" and h.action == "activate")
        assert weak_row.outcome == "rolled_back" and "weak averages 0.27" in weak_row.reason
        auto = models.history[0]
        assert (auto.action, auto.version, auto.previous, auto.outcome) == (
            "auto_rollback",
            "v1",
            "weak",
            "good",
        )
        assert models.current == "v1" and (agent.home / "models" / "current").readlink() == Path("v1")
        rollbacks = [j for j in c.get("/v1/jobs").json()["jobs"] if j["kind"] == "model.rollback"]
        assert rollbacks[0]["state"] == "succeeded"


def test_manual_rollback_and_what_may_be_removed(store_agent, files):
    agent = store_agent(probation_s=0)
    with agent.client() as c:
        assert c.post("/v1/models/rollback").status_code == 409  # nothing served from the store yet
        for name in ("v1", "v2"):
            assert upload(c, files[name], name).status_code == 201
        assert activate(c, "v1").state == "succeeded"
        assert activate(c, "v2").state == "succeeded"
        assert listing(c).last_good == "v1"
        r = c.delete("/v1/models/v2")
        assert r.status_code == 409 and "serving now" in r.json()["detail"]
        job = wait_job(c, c.post("/v1/models/rollback").json()["id"])
        assert job.state == "succeeded" and job.result["version"] == "v1" and job.result["previous"] == "v2"
        models = listing(c)
        assert models.serving.version == "v1" and models.current == "v1"
        assert next(h for h in models.history if h.version == "v2").outcome == "rolled_back"
        r = c.delete("/v1/models/v2")
        assert r.status_code == 200 and [v["version"] for v in r.json()["versions"]] == ["v1"]
        assert not (agent.home / "models" / "v2").exists()
        # rolling back from the first version goes to the configured model
        job = wait_job(c, c.post("/v1/models/rollback").json()["id"])
        assert job.state == "succeeded" and job.result["version"] is None
        assert c.get("/v1/status").json()["model"]["version"] is None
        assert not (agent.home / "models" / "current").is_symlink()


def _longest_gap(arrivals: list[float], start: float, end: float) -> float:
    """The longest wait between consecutive results over ``start``..``end`` (the waits that overlap it)."""
    pairs = [(a, b) for a, b in zip(arrivals, arrivals[1:], strict=False) if b > start and a < end]
    assert pairs, f"no results around {start:.2f}..{end:.2f}"
    return max(b - a for a, b in pairs)


def test_results_keep_flowing_while_a_model_activates(store_agent, files):
    """The longest gap between two results while a model activates stays under 2 frame intervals plus
    one inference of the new model. On a machine so busy that the pipeline alone stalls that long (the
    same span measured right after, with nothing activating), the activation is measured again."""
    fps = 10
    agent = store_agent(probation_s=0, source=f"demo:?fps={fps}&size=320x240")
    arrivals: list[float] = []
    agent.service.pipeline.add_listener(lambda image, dets, names: arrivals.append(time.monotonic()))
    with agent.client() as c:
        for name in ("v1", "v2"):
            assert upload(c, files[name], name).status_code == 201
        wait_for(lambda: len(arrivals) > fps)  # running at its pace
        versions = ("v2", "v1", "v2", "v1")
        for version in versions:
            t0 = time.monotonic()
            job = activate(c, version)
            t1 = time.monotonic()
            assert job.state == "succeeded", job.error
            span = max(t1 - t0, 0.5) + 2 / fps
            time.sleep(span + 2 / fps)
            gap = _longest_gap(arrivals, t0, t1)
            quiet = _longest_gap(arrivals, t1 + 2 / fps, t1 + 2 / fps + span)
            bound = 2 / fps + job.result["details"]["health"]["new_infer_max_ms"] / 1000
            if gap < bound:
                return
            assert quiet >= bound, (
                f"activating {version}: longest gap {gap * 1000:.0f} ms, bound {bound * 1000:.0f} ms, while "
                f"the pipeline alone stays within it ({quiet * 1000:.0f} ms)"
            )
    pytest.fail(f"the pipeline stalls beyond the bound even with nothing activating ({len(versions)} tries)")


def test_a_second_activation_supersedes_the_first_probation_and_rollback_goes_to_last_good(
    store_agent, files
):
    agent = store_agent(probation_s=60)
    with agent.client() as c:
        for name in ("v1", "v2"):
            assert upload(c, files[name], name).status_code == 201
        assert activate(c, "v1").state == "succeeded"
        assert activate(c, "v2").state == "succeeded"  # v1's probation ends unjudged, v2's begins
        models = listing(c)
        assert models.probation.version == "v2" and models.probation.previous == "v1"
        # v1 never passed: v2 is judged against the configured model, which stays loaded for a rollback
        assert models.probation.last_good is None
        assert {v.version: (v.state, v.verdict) for v in models.versions} == {
            "v2": ("probation", "on_probation"),
            "v1": ("inactive", "superseded"),
        }
        assert models.rollback.version is None and "no other version has passed" in models.rollback.why
        job = wait_job(c, c.post("/v1/models/rollback").json()["id"])
        # never to v1, which was superseded without passing
        assert job.state == "succeeded" and (job.result["version"], job.result["previous"]) == (None, "v2")
        models = listing(c)
        assert models.serving.version is None and models.probation is None
        v1_row = next(h for h in models.history if h.version == "v1" and h.action == "activate")
        assert v1_row.outcome == "superseded"
        assert v1_row.reason.startswith("superseded: v2 was activated during its probation")
        assert next(h for h in models.history if h.version == "v2").outcome == "rolled_back"
        assert models.rollback is None  # the configured model serves and nothing passed: none offered
        assert c.post("/v1/models/rollback").status_code == 409


def test_a_version_with_an_unreadable_manifest_is_listed_damaged_and_can_be_removed(store_agent, files):
    agent = store_agent(probation_s=0, keep=5)
    with agent.client() as c:
        for name in ("v1", "v2"):
            assert upload(c, files[name], name).status_code == 201
        (agent.home / "models" / "v2" / "manifest.json").write_text('{"version": "v2", "sha2')  # cut short
        models = listing(c)
        assert [v.version for v in models.versions] == ["v1"]
        (damaged,) = models.damaged
        assert damaged.version == "v2" and damaged.reason.startswith("the manifest of v2 is unreadable (")
        assert damaged.reason.endswith("; remove the version")
        assert any(line.startswith("damaged   v2: the manifest of v2") for line in models.summary_lines())
        r = c.delete("/v1/models/v2")
        assert r.status_code == 200 and r.json()["damaged"] == []
        assert not (agent.home / "models" / "v2").exists()
        # prune removes damaged versions too, with the reason in the history
        (agent.home / "models" / "v1" / "manifest.json").write_text("not json")
        assert upload(c, files["v2"], "v3").status_code == 201  # an upload prunes
        models = listing(c)
        assert models.damaged == [] and not (agent.home / "models" / "v1").exists()
        assert next(h for h in models.history if h.version == "v1").reason.startswith("pruned: damaged (")
