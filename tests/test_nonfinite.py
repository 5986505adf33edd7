"""A model that gives NaN only on dark frames: it passes the health check on bright live frames, then the
pipeline counts its non-finite frames (exported as a metric) and probation rolls it back for them."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agent.inference.nonfinite import outputs_finite
from tests import modelgen as mg
from tests import storemodels as sm
from tests.storeclient import listing, wait_for

DARK = 0.2  # mean input (after /255) under which the model's outputs are NaN


def dark_nan_detector(path):
    """sm.detector's outputs plus 0 * sqrt(mean(input) - DARK): NaN on dark input, unchanged otherwise."""
    out = mg.yolov8_output([(40, 40, 24, 24, 1, 0.9)], nc=4, anchors=336)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Constant", [], ["dark"], value=numpy_helper.from_array(np.float32(DARK), "dark")),
        helper.make_node("Sub", ["mean", "dark"], ["shifted"]),
        helper.make_node("Sqrt", ["shifted"], ["root"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0), "zero")),
        helper.make_node("Mul", ["root", "zero"], ["nothing"]),
        helper.make_node("Constant", [], ["const"], value=numpy_helper.from_array(out, "value")),
        helper.make_node("Add", ["const", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dark-nan-detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, sm.IMGSZ, sm.IMGSZ])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", mg.OPSET)])
    model.ir_version = mg.IR_VERSION
    for key, value in mg.ultralytics_metadata(sm.CLASSES, imgsz=sm.IMGSZ).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return path


def test_outputs_finite_sees_one_nan_or_inf_anywhere() -> None:
    clean = np.zeros((1, 84, 8400), np.float32)
    assert outputs_finite([clean, np.arange(3)])
    for bad in (np.nan, np.inf, -np.inf):
        dirty = clean.copy()
        dirty[0, 83, 8399] = bad
        assert not outputs_finite([clean, dirty])
    big = np.full((1, 84, 8400), 3e38, np.float32)  # would overflow a float32 sum: not a NaN
    assert outputs_finite([big])


def test_a_model_that_is_nan_on_dark_frames_is_counted_and_rolled_back(inproc_agent, tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    settings = {"probation_s": 3.0, "probation_min_frames": 3}
    (home / "config.toml").write_text(
        "[models]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    )
    agent = inproc_agent(home, source="demo:?fps=20&size=160x120")
    good, bad = sm.detector(tmp_path / "v1.onnx"), dark_nan_detector(tmp_path / "darknan.onnx")
    with agent.client(timeout=30.0) as c:
        for version, path in (("v1", good), ("darknan", bad)):
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            c.put(f"/v1/models/{version}", content=data, headers={"X-Model-Sha256": sha}).raise_for_status()
        c.post("/v1/models/v1/activate").raise_for_status()
        wait_for(lambda: any(h.version == "v1" and h.outcome == "good" for h in listing(c).history))

        job = c.post("/v1/models/darknan/activate").json()["id"]
        wait_for(lambda: c.get(f"/v1/jobs/{job}").json()["state"] == "succeeded")  # bright frames: passes
        # then the lights go out
        c.put(
            "/v1/pipeline/source", json={"uri": "demo:?fps=20&size=160x120&faults=dark@0"}
        ).raise_for_status()
        rolled = wait_for(
            lambda: next((h for h in listing(c).history if h.action == "auto_rollback"), None), timeout=40
        )
        failed = next(h for h in listing(c).history if h.version == "darknan" and h.action == "activate")
        assert "NaN or Inf" in failed.reason and "darknan" in failed.reason, failed
        assert rolled.version == "v1"
        metrics = c.get("/metrics").text
    line = next(ln for ln in metrics.splitlines() if ln.startswith("fieldtui_agent_frames_nonfinite_total"))
    assert float(line.split()[-1]) >= 1
    assert agent.service.pipeline.nonfinite_frames >= 1
    time.sleep(0)  # the pipeline keeps serving v1
    assert agent.service.pipeline.detector.info.version == "v1"
