"""Engines: ``GET /v1/engines`` (with stale flags), ``POST /v1/engines/rebuild`` (a job)."""

from __future__ import annotations

from fastapi import APIRouter

from agent.server.api.deps import Service
from fieldtui.protocol import EngineList, EngineRebuildRequest, Job, Problem

router = APIRouter(prefix="/v1/engines", tags=["engines"])


@router.get("", response_model=EngineList)
def list_engines(service: Service) -> EngineList:
    """Stored engines with their fingerprints, each checked against this device (stale and why), and
    what this device offers each runtime (can it build, and if not, why)."""
    return service.engines.list()


@router.post("/rebuild", response_model=Job, status_code=202, responses={409: {"model": Problem}})
def rebuild_engine(service: Service, request: EngineRebuildRequest) -> Job:
    """Build an engine from a store version (the serving one by default); follow it at GET
    /v1/jobs/{id}; the result is an EngineRebuildResult. 422 for a request this device cannot build
    (unknown backend, no such version, no calibration folder, Hailo: HEFs are compiled off-device);
    409 while another rebuild runs."""
    return service.engines.submit(request)
