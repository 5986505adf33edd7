"""``GET /v1/snapshot.jpg``: the drawing (agent/frames/snapshot.py) and the route, against a real agent."""

from __future__ import annotations

import asyncio
import io
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from agent.frames.snapshot import render_snapshot
from fieldtui.client import AgentClient
from fieldtui.errors import AgentClientError, AgentUnauthorized
from fieldtui.protocol.palette import PALETTE_RGB

NAMES = {0: "circle", 1: "square", 2: "triangle", 3: "cross"}


class _Dets(SimpleNamespace):
    def __len__(self) -> int:
        return len(self.scores)


def _decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)


def test_boxes_and_labels_are_drawn_in_class_colours_on_a_copy():
    image = np.full((480, 640, 3), 40, np.uint8)
    dets = _Dets(
        boxes=np.array([[40, 60, 200, 200]], np.float32), scores=np.array([0.87], np.float32), class_ids=[5]
    )
    out = _decode(render_snapshot(image, dets, NAMES))
    assert out.shape == (480, 640, 3)
    assert (image == 40).all()  # the pipeline's frame is never drawn on
    # The left edge of the box is the class colour (JPEG is lossy: compare loosely).
    edge = out[120:180, 40]
    assert np.abs(edge - np.array(PALETTE_RGB[5])).max(axis=1).min() < 40
    # The label ("class_5 0.87" - no name for id 5) is a filled band above the box, with text in it.
    band = out[42:58, 42:120]
    assert np.abs(band - np.array(PALETTE_RGB[5])).max(axis=2).mean() < 90
    assert band.std() > 10  # text pixels differ from the fill
    # Outside the box the picture is untouched grey.
    assert np.abs(out[300:470, 300:630] - 40).max() < 12


def test_width_scales_the_frame_and_the_boxes_down_but_never_up():
    image = np.full((480, 640, 3), 30, np.uint8)
    dets = _Dets(boxes=np.array([[320, 240, 600, 460]], np.float32), scores=np.array([0.5]), class_ids=[0])
    small = _decode(render_snapshot(image, dets, NAMES, width=160))
    assert small.shape == (120, 160, 3)
    assert np.abs(small[80:110, 80] - np.array(PALETTE_RGB[0])).max(axis=1).min() < 60  # box moved with it
    assert _decode(
        render_snapshot(image, _Dets(boxes=[], scores=[], class_ids=[]), NAMES, width=4000)
    ).shape == (
        480,
        640,
        3,
    )


def _object_scene() -> np.ndarray:
    """Grey frame with a white object at x 100..220, y 0..120 (touching the top edge)."""
    image = np.full((480, 640, 3), 40, np.uint8)
    image[0:120, 100:220] = 255
    return image


def test_labels_never_cover_the_object_they_name():
    dets = _Dets(boxes=np.array([[96, 0, 224, 124]], np.float32), scores=np.array([0.9]), class_ids=[0])
    # Full size, box against the top edge: the label goes below the box, not over the object.
    out = _decode(render_snapshot(_object_scene(), dets, NAMES))
    assert np.abs(out[10:112, 106:214] - 255).max() < 30  # the object, untouched
    below = out[127:140, 100:160]
    assert np.abs(below - np.array(PALETTE_RGB[0])).max(axis=2).mean() < 90 and below.std() > 10
    # A terminal-sized frame (one pixel a column): boxes only, no unreadable label over the object.
    small = _decode(render_snapshot(_object_scene(), dets, NAMES, width=80))
    assert small.shape == (60, 80, 3)
    assert np.abs(small[2:13, 15:26] - 255).max() < 40  # inside the box: the object
    assert np.abs(small[19:30, 12:40] - 40).max() < 25  # below it: no label band


def _wait_for_frame(client, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/v1/snapshot.jpg")
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_route_serves_the_annotated_frame_and_needs_the_token(agent_inproc):
    with agent_inproc.client() as client:
        r = _wait_for_frame(client)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg" and r.headers["cache-control"] == "no-store"
        assert _decode(r.content).shape[1] == 640  # the demo source is 640x480
        r = client.get("/v1/snapshot.jpg", params={"width": 96})
        assert _decode(r.content).shape[:2] == (72, 96)
        bad = client.get("/v1/snapshot.jpg", params={"width": 0})
        assert bad.status_code == 422 and "width" in bad.json()["detail"]
    import httpx

    anonymous = httpx.get(agent_inproc.url + "/v1/snapshot.jpg", timeout=5)
    assert anonymous.status_code == 401


def test_route_says_503_with_a_reason_until_a_frame_exists(inproc_agent):
    agent = inproc_agent(source="usb:97")  # no such camera: retried in the background, no frame ever
    with agent.client() as client:
        r = client.get("/v1/snapshot.jpg")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith("no frame yet")


async def test_client_fetches_the_jpeg_and_maps_errors(agent_inproc, inproc_agent):
    async with AgentClient(agent_inproc.url, agent_inproc.token) as client:
        for _ in range(300):
            try:
                jpeg = await client.snapshot_jpeg(width=64)
                break
            except AgentClientError as err:
                assert err.status == 503
                await asyncio.sleep(0.1)
        assert Image.open(io.BytesIO(jpeg)).size == (64, 48)
    async with AgentClient(agent_inproc.url, "wrong-token") as client:
        with pytest.raises(AgentUnauthorized):
            await client.snapshot_jpeg()
