"""``/v1/cameras``: every camera of the agent, each added, changed, enabled, disabled or removed without
restarting the others (agent/frames/multicam.py). An agent started with one ``source`` lists that one
camera (``cam0`` or ``camera`` in config.toml) and changes its source here too; running several needs
``[[cameras]]`` in config.toml (agent/core/cameras.py). Changes are saved to config.toml before they
are applied (agent/core/config_write.py), so a restart keeps them; a change that cannot be applied
leaves the file as it was. A source set by ``--source`` or the environment wins over the file: a change
to it runs until the agent restarts, and the log says so."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from agent.core.cameras import CameraConfigError, CameraSpec, check_name
from agent.core.config_write import save_cameras, save_source, saved_first
from agent.core.errors import AgentError
from agent.frames.cameraset import CameraSet
from agent.frames.snapshot import render_snapshot
from agent.frames.sources import make_source, redact
from agent.server.api.deps import Service
from agent.server.service import AgentService
from fieldtui.protocol import CameraChange, CameraList, CameraStatus, Problem

log = logging.getLogger("fieldtui.agent.cameras")

router = APIRouter(prefix="/v1/cameras", tags=["cameras"])

Name = Annotated[str, Path(description="camera name, [a-z0-9-]{1,32}")]
_ONE = (
    "this agent runs one camera (source in config.toml or --source); to run several, list them as "
    "[[cameras]] in config.toml and restart the agent"
)


def _name(name: str) -> str:
    try:
        return check_name(name)
    except CameraConfigError as err:
        raise AgentError(str(err), status=422) from None


def _saving(service: AgentService, specs: list[CameraSpec] | None = None, source: str | None = None):
    """Save the change to config.toml, then apply it (the body); the file is restored if that fails."""
    config = service.config
    path = config.config_file
    if path is None or (specs is None and "source" in config.pinned):
        log.info("camera change not saved: the source is set by --source or the environment")
        return contextlib.nullcontext()
    if specs is not None:
        return saved_first(path, lambda: save_cameras(path, specs))
    return saved_first(path, lambda: save_source(path, source or config.source))


def _one_camera(service: AgentService) -> CameraStatus:
    st = service.pipeline.status()
    return CameraStatus(
        name=service.config.camera,
        enabled=True,
        state=st.state,
        source=st.source,
        sample=st.sample.model_copy(update={"camera_name": service.config.camera}) if st.sample else None,
        error=st.error,
    )


def _status(cams: CameraSet, name: str) -> CameraStatus:
    spec = cams.spec(name)
    lane = cams.lane(name)
    if lane is None:
        state = "stopped"
    elif lane.capture.lost:
        state = "reconnecting"
    elif lane.error:
        state = "failed"
    else:
        state = "running" if lane.latest is not None else "starting"
    return CameraStatus(
        name=name,
        enabled=spec.enabled,
        state=state,
        source=cams.source_status(name),
        conf=spec.conf,
        sample=cams.sample(name),
        error=lane.error if lane is not None else None,
    )


def _get(service: AgentService, name: str) -> CameraStatus:
    pipeline = service.pipeline
    if isinstance(pipeline, CameraSet):
        return _status(pipeline, name)
    if name != service.config.camera:
        raise AgentError(f"no camera named {name!r}; this agent runs {service.config.camera!r}", status=404)
    return _one_camera(service)


@router.get("", response_model=CameraList)
def list_cameras(service: Service) -> CameraList:
    """Each camera's status, source (redacted), FPS, drops, health and last sample."""
    pipeline = service.pipeline
    if isinstance(pipeline, CameraSet):
        return CameraList(
            cameras=[_status(pipeline, spec.name) for spec in pipeline.cameras()],
            batch=pipeline.max_batch,
            batching=pipeline.batching(),
        )
    return CameraList(cameras=[_one_camera(service)])


@router.get("/{name}", response_model=CameraStatus, responses={404: {"model": Problem}})
def get_camera(service: Service, name: Name) -> CameraStatus:
    return _get(service, _name(name))


@router.put(
    "/{name}",
    response_model=CameraStatus,
    responses={404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}},
)
def put_camera(service: Service, name: Name, body: CameraChange, response: Response) -> CameraStatus:
    """Add the camera (201), or change its source, threshold or enabled flag (200). A new source is
    opened first: when it cannot be, 422 with the reason and the camera runs on as it was."""
    name = _name(name)
    if body.source is not None:
        make_source(body.source).close()  # 422 now for a URI of a form no source accepts
    pipeline = service.pipeline
    if not isinstance(pipeline, CameraSet):
        if name != service.config.camera or body.conf is not None or body.enabled is False:
            raise AgentError(_ONE, status=409)
        if body.source is not None:
            with service._control, _saving(service, source=body.source):
                pipeline.set_source(body.source)
            service.config.source = body.source
        return _one_camera(service)
    with service._control:  # read, save and apply as one step: two PUTs at once do not lose one
        specs = pipeline.cameras()
        known = {spec.name: spec for spec in specs}
        if name in known:
            old = known[name]
            spec = dataclasses.replace(
                old,
                source=body.source if body.source is not None else old.source,
                conf=body.conf if "conf" in body.model_fields_set else old.conf,
                enabled=body.enabled if body.enabled is not None else old.enabled,
            )
            specs = [spec if s.name == name else s for s in specs]
        else:
            if body.source is None:
                raise AgentError(
                    f'camera {name!r} is new: give its source, e.g. {{"source": "rtsp://..."}}', status=422
                )
            spec = CameraSpec(
                name=name, source=body.source, conf=body.conf, enabled=body.enabled is not False
            )
            specs.append(spec)
        with _saving(service, specs=specs):
            added = pipeline.put_camera(spec)
        service.config.cameras = specs
    response.status_code = 201 if added else 200
    return _status(pipeline, name)


@router.delete("/{name}", status_code=204, responses={404: {"model": Problem}, 409: {"model": Problem}})
def delete_camera(service: Service, name: Name) -> Response:
    """Remove the camera; the others run on. The last camera cannot be removed (409)."""
    name = _name(name)
    pipeline = service.pipeline
    if not isinstance(pipeline, CameraSet):
        _get(service, name)  # 404 for another name
        raise AgentError(
            f"camera {name!r} is the only camera of this agent and cannot be removed", status=409
        )
    with service._control:
        pipeline.spec(name)  # 404 before anything is saved
        specs = [s for s in pipeline.cameras() if s.name != name]
        if not specs:
            pipeline.remove_camera(name)  # the last camera: 409 with the reason, nothing saved
        with _saving(service, specs=specs):
            pipeline.remove_camera(name)
        service.config.cameras = specs
    return Response(status_code=204)


@router.get(
    "/{name}/snapshot.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Problem}, 503: {"model": Problem}},
)
def camera_snapshot(
    service: Service,
    name: Name,
    width: Annotated[int | None, Query(ge=16, le=4096, description="scale down to this width")] = None,
) -> Response:
    """This camera's last processed frame with its detections drawn, as JPEG."""
    status = _get(service, _name(name))
    pipeline = service.pipeline
    latest = pipeline.latest(name) if isinstance(pipeline, CameraSet) else pipeline.latest()
    if latest is None:
        raise AgentError(
            f"no frame yet from camera {name!r}: it is {status.state}"
            + (f" ({redact(status.source.reason)})" if status.source.reason else ""),
            status=503,
        )
    image, detections = latest
    body = render_snapshot(image, detections, pipeline.detector.names, width=width)
    return Response(body, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
