"""Pipeline control: start and stop answer at once; restart and a source change are mutating jobs."""

from __future__ import annotations

from fastapi import APIRouter

from agent.server.api.deps import Service
from fieldtui.protocol import Job, PipelineStatus, Problem, SourceChange, ThreadPolicy, ThreadsChange

router = APIRouter(prefix="/v1/pipeline", tags=["pipeline"])


@router.post("/start", response_model=PipelineStatus)
def start(service: Service) -> PipelineStatus:
    """Start the pipeline (a no-op when it runs); a camera not there yet is retried in the background."""
    return service.start_pipeline()


@router.post("/stop", response_model=PipelineStatus)
def stop(service: Service) -> PipelineStatus:
    return service.stop_pipeline()


@router.post("/restart", response_model=Job, status_code=202)
def restart(service: Service) -> Job:
    """A ``pipeline.restart`` job, queued behind any other mutating job; follow it on /v1/jobs/{id}."""
    return service.restart_pipeline()


@router.put(
    "/source",
    response_model=Job,
    status_code=202,
    responses={422: {"model": Problem, "description": "a URI of a form no source accepts"}},
)
def set_source(service: Service, body: SourceChange) -> Job:
    """Check the URI now (422 if it can never work), then switch in a ``pipeline.source`` job. If the
    new source cannot be opened the job fails with the reason and the old source keeps running.
    The change lasts until the agent restarts; ``source`` in config.toml is what it starts with."""
    return service.change_source(body.uri)


@router.put("/threads", response_model=ThreadPolicy)
def set_threads(service: Service, body: ThreadsChange) -> ThreadPolicy:
    """Fix inference's intra-op thread count (``{"threads": 2}``), or ``{"threads": null}`` to let the
    agent measure the best again. Applied on the running pipeline without a restart; lasts until the
    agent restarts (``threads`` in config.toml is what it starts with)."""
    return service.pipeline.tuner.set_fixed(body.threads)
