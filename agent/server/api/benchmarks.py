"""On-device benchmarks: ``POST /v1/benchmarks`` (a job), ``GET /v1/benchmarks[/{id}]`` (history)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from agent.server.api.deps import Service
from fieldtui.protocol import BenchmarkList, BenchmarkRequest, BenchmarkRun, Job

router = APIRouter(prefix="/v1/benchmarks", tags=["benchmarks"])


@router.post("", response_model=Job, status_code=202)
def start_benchmark(service: Service, request: BenchmarkRequest) -> Job:
    """Measure every (backend, precision, threads, batch) asked for; follow it at GET /v1/jobs/{id}.
    409 while another benchmark runs."""
    return service.benchmarks.submit(request)


@router.get("", response_model=BenchmarkList)
def list_benchmarks(service: Service, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> BenchmarkList:
    """Benchmark runs, newest first, each result with its comparison to the previous run."""
    return service.benchmarks.list(limit)


@router.get("/{run_id}", response_model=BenchmarkRun)
def get_benchmark(
    service: Service, run_id: Annotated[str, Path(min_length=1, max_length=64)]
) -> BenchmarkRun:
    return service.benchmarks.get(run_id)
