"""JobService: create and read jobs. Never commits (the request does), never imports FastAPI."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.events import EventLog
from app.db.job_keys import JobKeys
from app.db.job_repository import FailedTarget, JobFilter, JobRepository, Progress
from app.db.models import Job, JobEvent, JobTarget
from app.domain.codes import TargetErrorCode
from app.domain.destination_policy import destination_policy
from app.domain.guardrails import (
    ANY_DESTINATION,
    ANY_SOURCE,
    DestinationGuardrail,
    SourceGuardrail,
)
from app.domain.principals import Principal, principal_of
from app.domain.regions import partition_of
from app.domain.types import Action, JobStatus, KmsAccess, PrincipalType, Step, TargetStatus
from app.service.cursors import Page, decode_cursor, page_of
from app.service.errors import (
    ConflictError,
    FieldError,
    InvalidRequestError,
    NotFoundError,
    UnavailableError,
)
from app.service.requests import NewJob

T = TypeVar("T")

MAX_TARGETS = 1000  # AWS shares one AMI with at most 1,000 accounts, orgs and OUs per Region

SourceAccountLookup = Callable[[], Awaitable[str]]


class Requester(Protocol):
    """Who asks for a job (app/api/auth.py's Caller): a token's name and its own limits."""

    @property
    def name(self) -> str: ...

    @property
    def sources(self) -> SourceGuardrail: ...

    @property
    def destinations(self) -> DestinationGuardrail: ...


@dataclass(frozen=True, slots=True)
class NamedRequester:
    """A requester known by name alone: no limits of its own beyond the service's."""

    name: str
    sources: SourceGuardrail = ANY_SOURCE
    destinations: DestinationGuardrail = ANY_DESTINATION


def _requester(caller: Requester | None) -> Requester:
    return NamedRequester("") if caller is None else caller


@dataclass(frozen=True, slots=True)
class JobWithProgress:
    job: Job
    progress: Progress
    key_arns: tuple[str, ...] = ()  # the keys behind the job's images, once the worker knows

    @property
    def destination_policy(self) -> dict[str, Any]:
        """What identities in the destinations need in their own IAM policy."""
        return destination_policy(self.key_arns, copies=self.job.copy_options is not None)


@dataclass(frozen=True, slots=True)
class PreparedJob:
    """A job checked and built, not yet stored: its targets, and (for a plan) the principals
    the guardrail refuses, with why."""

    job: Job
    targets: list[JobTarget]
    refused: dict[str, str]


class JobService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        own_account: SourceAccountLookup,
    ) -> None:
        self.session = session
        self.jobs = JobRepository(session)
        self.settings = settings
        self.own_account = own_account

    async def create(
        self, request: NewJob, requester: Requester, idempotency_key: str | None
    ) -> tuple[JobWithProgress, bool]:
        """The job and whether it was created now (False: an earlier one with the same key).
        `requester`: the token's name and its own limits."""
        if idempotency_key is not None:
            earlier = await self._replay(request, requester.name, idempotency_key)
            if earlier is not None:
                return earlier, False
        prepared = await self._prepare(request, requester, idempotency_key, planning=False)
        job, rows = prepared.job, prepared.targets
        try:
            async with self.session.begin_nested():
                await self.jobs.add(job, rows)
        except IntegrityError:
            # Another request with the same Idempotency-Key won the race.
            assert idempotency_key is not None
            earlier = await self._replay(request, requester.name, idempotency_key)
            if earlier is None:
                raise
            return earlier, False
        return JobWithProgress(job, _fresh_progress(len(rows))), True

    async def prepare_plan(self, request: NewJob, requester: Requester) -> PreparedJob:
        """The job the request would be, checked as a job is and not stored (POST /v1/plans):
        a destination the guardrail refuses is a refused target of the plan, not a 422."""
        return await self._prepare(request, requester, None, planning=True)

    async def _prepare(
        self,
        request: NewJob,
        requester: Requester,
        idempotency_key: str | None,
        *,
        planning: bool,
    ) -> PreparedJob:
        source_account_id, own_account = await self._source_account(request)
        errors = self._source_errors(request, source_account_id, own_account, requester)
        refused: dict[str, str] | None = {} if planning else None
        errors += _reconcile_errors(request, planning)
        targets = self._targets(request, source_account_id, requester, errors, refused)
        self._check_copy(request)
        regions = self._regions(request)
        job = Job(
            id=f"job-{uuid.uuid4().hex}",
            action=request.action,
            status=JobStatus.QUEUED,
            image_id=request.image_id,
            region=request.region,
            source_account_id=source_account_id,
            kms_access=request.kms_access,
            share_snapshots=request.share_snapshots,
            verify=self._verify(request),
            copy_options=request.copy,
            reencrypt={"kms_key_id": request.reencrypt_key} if request.reencrypt_key else None,
            shared_image_id=None if request.reencrypt_key else request.image_id,
            regions=regions,
            region_kms_key_ids=dict(request.region_kms_key_ids),
            labels=dict(request.labels),
            repair=request.repair,
            prune=request.prune,
            created_by=requester.name,
            idempotency_key=idempotency_key,
            request_hash=request.fingerprint if idempotency_key else None,
        )
        # One target per principal and Region: the job's Region first, then each of regions.
        pairs = [(p, r) for r in [request.region, *regions] for p in targets]
        rows = [
            JobTarget(
                job_id=job.id,
                position=position,
                principal=principal.value,
                principal_type=principal.type,
                region=region,
                image_id=job.shared_image_id if region == request.region else None,
                status=TargetStatus.PENDING,
                step=Step.PENDING,
            )
            for position, (principal, region) in enumerate(pairs)
        ]
        return PreparedJob(job, rows, refused or {})

    async def get(self, job_id: str) -> JobWithProgress:
        job = await self._job(job_id)
        progress = (await self.jobs.progress([job.id]))[job.id]
        keys = (await JobKeys(self.session).of([job.id]))[job.id]
        return JobWithProgress(job, progress, tuple(keys))

    async def list_jobs(
        self, filters: JobFilter, limit: int, cursor: str | None
    ) -> Page[JobWithProgress]:
        before = decode_cursor(cursor, int)
        jobs = page_of(await self.jobs.newest_first(filters, limit + 1, before), limit, _seq)
        progress = await self.jobs.progress([j.id for j in jobs.items])
        keys = await JobKeys(self.session).of([j.id for j in jobs.items])
        items = [JobWithProgress(j, progress[j.id], tuple(keys[j.id])) for j in jobs.items]
        return Page(items, jobs.next_cursor)

    async def targets(
        self,
        job_id: str,
        status: str | None,
        limit: int,
        cursor: str | None,
        region: str | None = None,
    ) -> Page[JobTarget]:
        after = decode_cursor(cursor, int)
        await self._job(job_id)
        rows = await self.jobs.targets(job_id, status, limit + 1, after, region)
        return page_of(rows, limit, lambda target: target.position)

    async def cancel(self, job_id: str) -> JobWithProgress:
        """A queued job is cancelled now; a running one at its next step boundary, where what
        it changed for unfinished targets is undone and recorded."""
        job = await self._job(job_id)
        if JobStatus(job.status).is_finished:
            raise ConflictError(
                f"Job {job_id} is already {job.status}; there is nothing to cancel."
            )
        if not await self.jobs.cancel_queued(job_id):
            await self.jobs.request_cancel(job_id)
        return await self.get(job_id)

    async def retry(self, job_id: str, caller: Requester | None = None) -> JobWithProgress:
        """Queue a finished job's failed targets again, in the same job: those that the
        service's allowed lists and the retrying token's own still allow. The others stay
        failed, with DestinationNotAllowed. `caller` None: no token limits of its own."""
        requester = _requester(caller)
        job = await self._job(job_id)
        if not JobStatus(job.status).is_finished:
            raise ConflictError(
                f"Job {job_id} is {job.status}; only a finished job can be retried."
            )
        failed = await self.jobs.failed_targets(job_id)
        if not failed:
            raise ConflictError(f"Job {job_id} has no failed targets to retry.")
        source_refusal = self._source_refusal(job.source_account_id, requester)
        if source_refusal is not None:
            raise ConflictError(f"Job {job_id} cannot be retried: {source_refusal}.")
        refused: dict[str, list[int]] = {}
        requeued: list[int] = []
        for target in failed:
            giving = _gives(Action(job.action), job.repair)
            reason = self._destination_refusal(_principal(target), requester, giving)
            if reason is None:
                requeued.append(target.position)
            else:
                refused.setdefault(reason, []).append(target.position)
        if not requeued:
            raise ConflictError(
                f"Job {job_id} has no failed target that may be retried: each is "
                + "; ".join(f"{reason} ({len(p)})" for reason, p in refused.items())
                + "."
            )
        for reason, positions in refused.items():
            await self.jobs.refuse_failed(
                job_id,
                positions,
                TargetErrorCode.DESTINATION_NOT_ALLOWED,
                f"Not retried: the guardrail no longer allows this destination ({reason}).",
            )
        if not await self.jobs.requeue_failed(job_id, requeued):
            raise ConflictError(f"Job {job_id} has no failed targets to retry.")
        return await self.get(job_id)

    async def events(self, job_id: str, limit: int, cursor: str | None) -> Page[JobEvent]:
        after = decode_cursor(cursor, int)
        await self._job(job_id)
        rows = await EventLog(self.session).page(job_id, limit + 1, after)
        return page_of(rows, limit, lambda event: event.id)

    async def _job(self, job_id: str) -> Job:
        job = await self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"No job with id '{job_id}'.")
        return job

    async def _replay(self, request: NewJob, caller: str, key: str) -> JobWithProgress | None:
        earlier = await self.jobs.find_by_idempotency_key(caller, key)
        if earlier is None:
            return None
        if earlier.request_hash != request.fingerprint:
            raise InvalidRequestError.of(
                "Idempotency-Key",
                f"this key was used for job {earlier.id} with a different request body; "
                "use a new key for a new request",
                location="header",
            )
        return await self.get(earlier.id)

    async def _source_account(self, request: NewJob) -> tuple[str, str | None]:
        """The job's source account, and the service's own when it was needed to decide."""
        if request.source_account_id is None:
            own = await self._own_account()
            return own, own
        own_or_none = await self._own_account() if self.settings.own_account_only else None
        return request.source_account_id, own_or_none

    async def _own_account(self) -> str:
        try:
            return await self.own_account()
        except Exception as error:
            raise UnavailableError(
                "Could not determine the service's own AWS account to use as the source; "
                "pass source_account_id or try again."
            ) from error

    def _verify(self, request: NewJob) -> bool:
        """A share checks from each destination that it sees the image; a revoke, that it
        no longer does. Both need the destination role."""
        if request.action is Action.RECONCILE:
            if request.verify:
                raise InvalidRequestError.of(
                    "verify", "a reconcile compares the ledger with AWS; it does not verify"
                )
            return False
        if request.verify and not self.settings.destination_role_configured:
            raise InvalidRequestError.of(
                "verify",
                "verification needs a destination role, and AMISHARE_DESTINATION_ROLE_NAME "
                "is not set on this service",
            )
        if request.verify is None:
            return self.settings.destination_role_configured
        return request.verify

    def _regions(self, request: NewJob) -> list[str]:
        """The job's other Regions, in order, each once; a share names the key of each."""
        errors: list[FieldError] = []
        regions: list[str] = []
        partition = partition_of(request.region)
        for index, region in enumerate(request.regions):
            where = f"regions[{index}]"
            if region == request.region:
                errors.append(FieldError(where, "is the job's own region: list only others"))
            elif partition_of(region) != partition:
                errors.append(
                    FieldError(where, f"is not in the partition of {request.region} ({partition})")
                )
            elif region not in regions:
                regions.append(region)
        for region in request.region_kms_key_ids:
            if region not in regions:
                errors.append(FieldError(f"region_kms_key_ids.{region}", "is not one of regions"))
        if request.action is Action.SHARE:
            for region in regions:
                if region not in request.region_kms_key_ids:
                    errors.append(
                        FieldError(
                            f"region_kms_key_ids.{region}",
                            "a customer managed key of the source in this region is needed: "
                            "the copy there is encrypted with it",
                        )
                    )
        if errors:
            raise InvalidRequestError("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
        return regions

    def _check_copy(self, request: NewJob) -> None:
        """`copy` and `reencrypt` are for shares, and a copy needs what copying needs."""
        if request.action is not Action.SHARE:
            for name, value in (("copy", request.copy), ("reencrypt", request.reencrypt_key)):
                if value is not None:
                    raise InvalidRequestError.of(name, "only a share job copies; leave it unset")
            return
        if request.copy is None:
            return
        if not self.settings.destination_role_configured:
            raise InvalidRequestError.of(
                "copy",
                "copying into destinations needs a destination role, and "
                "AMISHARE_DESTINATION_ROLE_NAME is not set on this service",
            )
        if request.kms_access is KmsAccess.NONE:
            raise InvalidRequestError.of(
                "copy", "a destination copies only with the key: kms_access 'none' forbids it"
            )
        if not request.share_snapshots:
            raise InvalidRequestError.of(
                "copy", "copying needs the snapshots shared: share_snapshots false forbids it"
            )

    def _source_errors(
        self,
        request: NewJob,
        source_account_id: str,
        own_account: str | None,
        requester: Requester,
    ) -> list[FieldError]:
        field = "source_account_id"
        if self.settings.own_account_only and source_account_id != own_account:
            return [
                FieldError(
                    field,
                    "acting in another account needs a source role, and "
                    "AMISHARE_SOURCE_ROLE_NAME is not set on this service; leave it unset "
                    "to use the service's own account",
                )
            ]
        refusal = self._source_refusal(source_account_id, requester)
        if refusal is None:
            return []
        if request.source_account_id is None:
            refusal = f"this service's own account {source_account_id}, the default, is {refusal}"
        return [FieldError(field, refusal)]

    def _source_refusal(self, source_account_id: str, requester: Requester) -> str | None:
        """Why this source account is not allowed (None: it is)."""
        if not self.settings.allowed_sources.allows(source_account_id):
            return "not among this service's allowed source accounts"
        if not requester.sources.allows(source_account_id):
            return "not among this token's allowed source accounts"
        return None

    def _destination_refusal(
        self, principal: Principal, requester: Requester, giving: bool
    ) -> str | None:
        """Why this destination is not allowed (None: it is). The service's list guards what
        is given: taking access back from a destination it no longer allows is always fine."""
        if giving and not self.settings.allowed_destinations.allows(principal):
            return "not among this service's allowed destinations"
        if not requester.destinations.allows(principal):
            return "not among this token's allowed destinations"
        return None

    def _targets(
        self,
        request: NewJob,
        source_account_id: str,
        requester: Requester,
        errors: list[FieldError],
        refused: dict[str, str] | None = None,
    ) -> list[Principal]:
        """The job's principals in request order, duplicates folded, every rule checked; a
        422 with `errors` and every broken rule. With `refused` (a plan), a destination the
        guardrail refuses is put there instead of being an error."""
        principals: list[Principal] = []
        seen: set[str] = set()
        giving = _gives(request.action, request.repair)
        groups = [
            ("account_ids", request.account_ids, PrincipalType.ACCOUNT),
            ("organization_arns", request.organization_arns, PrincipalType.ORGANIZATION),
            (
                "organizational_unit_arns",
                request.organizational_unit_arns,
                PrincipalType.ORGANIZATIONAL_UNIT,
            ),
        ]
        for field, values, kind in groups:
            for index, value in enumerate(values):
                where = f"{field}[{index}]"
                principal = Principal(value, kind)
                refusal = self._destination_refusal(principal, requester, giving)
                if kind is PrincipalType.ACCOUNT and value == source_account_id:
                    errors.append(FieldError(where, "the source account cannot be a destination"))
                elif refusal is not None and refused is not None:
                    refused[value] = f"the guardrail refuses it: {refusal}"
                elif refusal is not None:
                    errors.append(FieldError(where, refusal))
                elif kind is not PrincipalType.ACCOUNT and request.kms_access is KmsAccess.GRANT:
                    errors.append(
                        FieldError(
                            where,
                            "KMS grants go to accounts only; use kms_access 'key_policy' "
                            "for organizations and OUs",
                        )
                    )
                if value not in seen:
                    seen.add(value)
                    principals.append(principal)
        if not principals and request.action is not Action.RECONCILE:
            errors.append(FieldError("account_ids", "give at least one destination"))
        if len(principals) > MAX_TARGETS:
            errors.append(
                FieldError("account_ids", f"at most {MAX_TARGETS} destinations in one job")
            )
        if errors:
            raise InvalidRequestError("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
        return principals


def _gives(action: Action, repair: bool) -> bool:
    """Whether the job gives access, and so is guarded by the service's destination list: a
    share, or a reconcile that repairs."""
    return action is Action.SHARE or repair


def _reconcile_errors(request: NewJob, planning: bool) -> list[FieldError]:
    """repair and prune are a reconcile's; a reconcile is in one Region, and not planned."""
    errors: list[FieldError] = []
    if request.action is not Action.RECONCILE:
        errors += [
            FieldError(name, "only a reconcile job repairs or prunes; leave it unset")
            for name, value in (("repair", request.repair), ("prune", request.prune))
            if value
        ]
        return errors
    if planning:
        errors.append(
            FieldError(
                "action",
                "a reconcile is not planned: run it without repair or prune to see the drift",
            )
        )
    if request.regions:
        errors.append(FieldError("regions", "a reconcile is of one Region: run one per Region"))
    return errors


def _principal(target: FailedTarget) -> Principal:
    return principal_of(target.principal, target.principal_type)


def _fresh_progress(total: int) -> Progress:
    progress: Progress = Progress()
    progress[TargetStatus.PENDING] = total
    return progress


def _seq(job: Job) -> int:
    assert job.seq is not None  # a stored job
    return job.seq
