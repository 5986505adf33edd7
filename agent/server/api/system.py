"""Who the device is and how it is doing: health, device, status, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.server.api.deps import Service
from fieldtui.protocol import DeviceInfo, HealthReport, PipelineStatus

router = APIRouter()


@router.get("/v1/health", response_model=HealthReport, tags=["public"])
async def health(service: Service) -> HealthReport:
    """ok / degraded / failing with the reasons. Public; always 200 - the verdict is in the body.
    On the event loop, not the thread pool: it answers while slow requests fill the pool."""
    return service.health()


@router.get("/v1/device", response_model=DeviceInfo)
def device(service: Service) -> DeviceInfo:
    """Identity, platform, accelerators found, and every backend with why it is or is not usable."""
    return service.device()


@router.get("/v1/status", response_model=PipelineStatus)
def status(service: Service) -> PipelineStatus:
    """Pipeline state, source, active model, the last sample and camera health."""
    return service.status()


@router.get(
    "/metrics",
    response_class=Response,
    tags=["public"],
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus exposition"}},
)
async def metrics(service: Service) -> Response:
    """Prometheus text exposition. Public, so a scraper needs no secret. On the event loop, like
    health, so a scrape is answered while the thread pool is busy."""
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
