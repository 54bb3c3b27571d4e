"""``GET /jobs`` (a page of jobs) and ``GET /jobs/{job_id}``: background embedding jobs.

Jobs are recorded beside the items (SQLite): they outlive a restart of the service."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from services.api.deps import Authenticated, JobsDep
from services.api.routes.params import Limit, Offset
from services.api.schemas import ERROR_RESPONSES, JobOut, JobPage
from services.job_records import JobState

router = APIRouter(tags=["jobs"], dependencies=[Authenticated])


@router.get("/jobs", response_model=JobPage, responses=ERROR_RESPONSES)
def list_jobs(
    jobs: JobsDep, state: JobState | None = None, offset: Offset = 0, limit: Limit = 50
) -> JobPage:
    """A page of jobs, oldest first; ``state`` keeps the jobs in that state only."""
    page, total = jobs.page(state, offset, limit)
    return JobPage(
        jobs=[JobOut.model_validate(asdict(job)) for job in page],
        total=total,
        offset=offset,
        limit=limit,
    )


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERROR_RESPONSES)
def get_job(job_id: str, jobs: JobsDep) -> JobOut:
    """State (queued, running, done, failed), progress 0-1, and the result or the error."""
    return JobOut.model_validate(asdict(jobs.status(job_id)))
