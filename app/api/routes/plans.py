"""/v1/plans: what a job would change, found by the job's own procedures, and changing nothing."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import RuntimeDep, Writer, job_service
from app.api.plan_schemas import PlanOut
from app.api.routes.jobs import PROBLEMS
from app.api.schemas import JobCreate
from app.domain.principals import principal_of

router = APIRouter(prefix="/v1/plans", tags=["plans"])


@router.post(
    "",
    response_model=PlanOut,
    responses=PROBLEMS,
    summary="Plan a job: every AWS change it would make, and each target's outcome",
)
async def create_plan(body: JobCreate, runtime: RuntimeDep, caller: Writer) -> PlanOut:
    # The request is checked as a job's is; the transaction ends before AWS is read.
    async with job_service(runtime) as service:
        prepared = await service.prepare_plan(body.to_new_job(), caller)
    targets = [(principal_of(t.principal, t.principal_type), t.region) for t in prepared.targets]
    plan = await runtime.planner.plan(prepared.job, targets, prepared.refused)
    return PlanOut.of(prepared.job, plan)
