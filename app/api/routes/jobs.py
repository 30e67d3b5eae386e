"""/v1/jobs: create, read, list, and the targets of one job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from app.api.deps import JobServiceDep, Reader, Writer
from app.api.schemas import (
    EventOut,
    EventPage,
    JobCreate,
    JobOut,
    JobPage,
    Problem,
    TargetOut,
    TargetPage,
)
from app.db.jobs import JobFilter
from app.domain.principals import ACCOUNT_ID, IMAGE_ID, ORGANIZATION_ARN, OU_ARN
from app.domain.types import Action, JobStatus, TargetStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# Patterns keep the values a database would refuse (a NUL byte on PostgreSQL) a 422, not a 503.
JobId = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="A job's id")
]
PRINCIPAL = "|".join(p.pattern for p in (ACCOUNT_ID, ORGANIZATION_ARN, OU_ARN))
Limit = Annotated[int, Query(ge=1, le=500, description="At most this many items")]
Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of a page")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        description="The same key with the same body returns the first job (200).",
    ),
]
PROBLEMS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (401, 403, 404, 422, 503)
}


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = [c.strip().removeprefix("W/") for c in if_none_match.split(",")]
    return "*" in candidates or etag in candidates


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses={200: {"model": JobOut, "description": "An earlier job with this key"}, **PROBLEMS},
    summary="Queue a share job",
)
async def create_job(
    body: JobCreate,
    request: Request,
    service: JobServiceDep,
    caller: Writer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    found, created = await service.create(body.to_new_job(), caller.name, idempotency_key)
    if created:
        request.app.state.metrics.jobs_created.labels(action=found.job.action).inc()
    out = JobOut.of(found.job, found.progress)
    wake = request.app.state.wake_worker
    return JSONResponse(
        out.model_dump(mode="json", by_alias=True),
        status_code=202 if created else 200,
        headers={"Location": f"/v1/jobs/{out.id}", "ETag": f'"v{found.job.version}"'},
        background=BackgroundTask(wake) if created else None,
    )


@router.get(
    "/{job_id}",
    response_model=JobOut,
    responses={304: {"description": "Not modified since the ETag given"}, **PROBLEMS},
    summary="One job, with its progress",
)
async def get_job(
    job_id: JobId,
    service: JobServiceDep,
    _caller: Reader,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    if if_none_match:
        version = await service.version(job_id)
        etag = f'"v{version}"'
        if _matches(if_none_match, etag):
            return Response(status_code=304, headers={"ETag": etag})
    found = await service.get(job_id)
    out = JobOut.of(found.job, found.progress)
    return JSONResponse(
        out.model_dump(mode="json", by_alias=True),
        headers={"ETag": f'"v{found.job.version}"', "Cache-Control": "no-cache"},
    )


@router.get("", response_model=JobPage, responses=PROBLEMS, summary="Jobs, newest first")
async def list_jobs(
    service: JobServiceDep,
    _caller: Reader,
    status: Annotated[JobStatus | None, Query()] = None,
    action: Annotated[Action | None, Query()] = None,
    image_id: Annotated[str | None, Query(max_length=32, pattern=IMAGE_ID.pattern)] = None,
    account_id: Annotated[
        str | None,
        Query(
            max_length=256,
            pattern=PRINCIPAL,
            description="Jobs with this destination: an account ID, or an organization or OU ARN",
        ),
    ] = None,
    label: Annotated[
        str | None,
        Query(pattern=r"^[^:\x00]+:[^\x00]*$", max_length=400, description="key:value"),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> JobPage:
    filters = JobFilter(
        status=status,
        action=action,
        image_id=image_id,
        account_id=account_id,
        label=tuple(label.split(":", 1)) if label else None,  # type: ignore[arg-type]
    )
    page = await service.list_jobs(filters, limit, cursor)
    return JobPage(
        items=[JobOut.of(found.job, found.progress) for found in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{job_id}/targets",
    response_model=TargetPage,
    responses=PROBLEMS,
    summary="A job's targets, in request order",
)
async def list_targets(
    job_id: JobId,
    service: JobServiceDep,
    _caller: Reader,
    status: Annotated[TargetStatus | None, Query()] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> TargetPage:
    page = await service.targets(job_id, status, limit, cursor)
    return TargetPage(items=[TargetOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobOut,
    responses={409: {"model": Problem, "description": "The job is already finished"}, **PROBLEMS},
    summary="Cancel a job",
    description="A queued job is cancelled at once. A running share stops at its next step "
    "boundary: targets not finished become `cancelled` and what the job changed on AWS for "
    "them is undone (key access stays where another share needs it). A running revoke "
    "finishes, since stopping it halfway would leave access half taken back.",
)
async def cancel_job(job_id: JobId, service: JobServiceDep, _caller: Writer) -> JobOut:
    found = await service.cancel(job_id)
    return JobOut.of(found.job, found.progress)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobOut,
    responses={
        409: {"model": Problem, "description": "Not finished, or nothing failed"},
        **PROBLEMS,
    },
    summary="Run a finished job's failed targets again",
)
async def retry_job(
    job_id: JobId, request: Request, service: JobServiceDep, _caller: Writer
) -> JSONResponse:
    found = await service.retry(job_id)
    out = JobOut.of(found.job, found.progress)
    return JSONResponse(
        out.model_dump(mode="json", by_alias=True),
        status_code=202,
        background=BackgroundTask(request.app.state.wake_worker),
    )


@router.get(
    "/{job_id}/events",
    response_model=EventPage,
    responses=PROBLEMS,
    summary="The audit trail: every AWS change the job made, and its outcome",
)
async def list_events(
    job_id: JobId,
    service: JobServiceDep,
    _caller: Reader,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> EventPage:
    page = await service.events(job_id, limit, cursor)
    return EventPage(items=[EventOut.of(e) for e in page.items], next_cursor=page.next_cursor)
