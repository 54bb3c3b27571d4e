"""``GET /jobs/{job_id}``: the state of a background embedding job."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from services.api.deps import Authenticated, JobsDep
from services.api.schemas import ERROR_RESPONSES, JobOut

router = APIRouter(tags=["jobs"], dependencies=[Authenticated])


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERROR_RESPONSES)
def get_job(job_id: str, jobs: JobsDep) -> JobOut:
    """State (queued, running, done, failed), progress 0-1, and the result or the error."""
    return JobOut.model_validate(asdict(jobs.status(job_id)))
