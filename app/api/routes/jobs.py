"""/v1/jobs: create, read, list, and the targets of one job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from app.api.deps import JobServiceDep, Reader, Writer
from app.api.schemas import JobCreate, JobOut, JobPage, Problem, TargetOut, TargetPage
from app.db.jobs import JobFilter
from app.domain.types import Action, JobStatus, TargetStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=64, description="A job's id")]
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
        _id, version = await service.version(job_id)
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
    image_id: Annotated[str | None, Query(max_length=32)] = None,
    account_id: Annotated[str | None, Query(max_length=256)] = None,
    label: Annotated[
        str | None, Query(pattern=r"^[^:]+:.*$", max_length=400, description="key:value")
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
