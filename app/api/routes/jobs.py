"""/v1/jobs: create, read, list, and the targets of one job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from app.api.deps import (
    JobServiceDep,
    PollDep,
    Reader,
    RuntimeDep,
    StatusCacheDep,
    Writer,
    job_service,
)
from app.api.etags import OPENAPI_PARAMETER
from app.api.fields import LabelFilterCheck, Region
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
from app.db.job_repository import JobFilter
from app.domain.principals import ACCOUNT_ID, IMAGE_ID, ORGANIZATION_ARN, OU_ARN
from app.domain.types import Action, JobStatus, TargetStatus
from app.service.jobs import JobWithProgress
from app.service.status_cache import StatusCache, etag_of

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
    for code in (401, 403, 404, 413, 422, 503)
}


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses={200: {"model": JobOut, "description": "An earlier job with this key"}, **PROBLEMS},
    summary="Queue a share or revoke job",
)
async def create_job(
    body: JobCreate,
    runtime: RuntimeDep,
    service: JobServiceDep,
    caller: Writer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    found, created = await service.create(body.to_new_job(), caller, idempotency_key)
    if created:
        runtime.metrics.jobs_created.labels(action=found.job.action).inc()
    out = JobOut.of(found)
    return JSONResponse(
        out.model_dump(mode="json", by_alias=True),
        status_code=202 if created else 200,
        headers={"Location": f"/v1/jobs/{out.id}", "ETag": etag_of(found.job.version)},
        background=BackgroundTask(runtime.wake_worker) if created else None,
    )


@router.get(
    "/{job_id}",
    response_model=JobOut,
    responses={304: {"description": "Not modified since the ETag given"}, **PROBLEMS},
    summary="One job, with its progress",
    openapi_extra={"parameters": [OPENAPI_PARAMETER]},
)
async def get_job(job_id: JobId, _caller: Reader, poll: PollDep) -> Response:
    # The route dashboards poll: answered from the status cache while the job's version there
    # is confirmed (app/service/status_cache.py), else read once for every poller.
    cache, if_none_match = poll.runtime.status_cache, poll.if_none_match
    snapshot = cache.get(job_id)
    if snapshot is None or if_none_match.newest_version > snapshot.version:

        async def read() -> tuple[int, bytes]:
            async with job_service(poll.runtime) as service:
                found = await service.get(job_id)
            return found.job.version, _render(JobOut.of(found))

        snapshot = await cache.load(job_id, read)
    if if_none_match.matches(snapshot.etag):
        return Response(status_code=304, headers={"ETag": snapshot.etag})
    headers = {"ETag": snapshot.etag, "Cache-Control": "no-cache"}
    return Response(snapshot.body, media_type="application/json", headers=headers)


def _render(out: JobOut) -> bytes:
    return bytes(JSONResponse(out.model_dump(mode="json", by_alias=True)).body)


@router.get(
    "/{job_id}/destination-policy",
    responses={
        200: {
            "description": "An IAM policy document, for aws iam create-policy --policy-document",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **PROBLEMS,
    },
    summary="The IAM policy a destination's identities need for the job's images",
)
async def get_destination_policy(
    job_id: JobId, service: JobServiceDep, _caller: Reader
) -> JSONResponse:
    found = await service.get(job_id)
    return JSONResponse(found.destination_policy)


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
        LabelFilterCheck,
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
        items=[JobOut.of(found) for found in page.items],
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
    region: Annotated[Region | None, Query(description="Only this Region's targets")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> TargetPage:
    page = await service.targets(job_id, status, limit, cursor, region)
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
async def cancel_job(
    job_id: JobId, service: JobServiceDep, cache: StatusCacheDep, _caller: Writer
) -> JSONResponse:
    found = await service.cancel(job_id)
    return _changed(cache, found, status_code=202)


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
    job_id: JobId,
    runtime: RuntimeDep,
    service: JobServiceDep,
    cache: StatusCacheDep,
    caller: Writer,
) -> JSONResponse:
    found = await service.retry(job_id, caller)
    return _changed(cache, found, status_code=202, then=runtime.wake_worker)


def _changed(
    cache: StatusCache,
    found: JobWithProgress,
    *,
    status_code: int,
    then: Callable[[], None] | None = None,
) -> JSONResponse:
    """The answer to a change of a job: its remembered status is forgotten now and again once
    the change is committed (a poll in between may have remembered the old one)."""
    job_id = found.job.id
    cache.forget(job_id)

    def committed() -> None:
        cache.forget(job_id)
        if then is not None:
            then()

    out = JobOut.of(found)
    return JSONResponse(
        out.model_dump(mode="json", by_alias=True),
        status_code=status_code,
        background=BackgroundTask(committed),
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
