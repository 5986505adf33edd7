"""Long operations: list, look at and cancel jobs (their kinds are submitted by other routes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from agent.server.api.deps import Service
from fieldtui.protocol import Job, JobList

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=64, description="the job's id (32 hex digits)")]


@router.get("", response_model=JobList)
def list_jobs(
    service: Service,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    kind: Annotated[str | None, Query(max_length=64)] = None,
) -> JobList:
    """Recent jobs, newest first (running and queued ones included)."""
    return JobList(jobs=service.jobs.list(limit, kind))


@router.get("/{job_id}", response_model=Job)
def get_job(service: Service, job_id: JobId) -> Job:
    return service.jobs.get(job_id)


@router.post("/{job_id}/cancel", response_model=Job)
def cancel_job(service: Service, job_id: JobId) -> Job:
    """Remove a queued job, or ask a running one to stop (it stops at its next check); 409 if finished."""
    return service.jobs.cancel(job_id)
