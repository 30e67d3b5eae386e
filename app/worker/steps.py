"""The source-side AWS steps, both ways: grant and take back key access, snapshot permission and
launch permission. Each reads current state and applies the difference, in batches, isolating a
principal that AWS rejects; each change is audited whether it lands or not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

from app.aws.call_errors import AwsCallError, ErrorKind
from app.aws.gateway import Change, GrantInfo, SourceAccount
from app.config import Settings
from app.domain.codes import JobErrorCode, JobFailedError, TargetErrorCode
from app.domain.job_spec import JobSpec
from app.domain.key_policy import (
    KEY_POLICY_MAX_BYTES,
    KeyGrantee,
    KeyPolicyConflictError,
    grantee_of,
    grantees_in_policy,
    parse_policy,
    policy_size,
    render_policy,
    with_grantees,
)
from app.domain.plans import PlanLog, PlannedChange
from app.domain.principals import Principal
from app.domain.retry import RetryPolicy
from app.domain.types import Step
from app.worker.batching import apply_isolating_rejects, chunked
from app.worker.failures import source_failure
from app.worker.ports import JobRecorder, KeyLocks
from app.worker.retry import with_retries

T = TypeVar("T")
SNAPSHOT_BATCH = 500  # ModifySnapshotAttribute takes at most 500 user IDs per call
LAUNCH_PERMISSION_BATCH = 500
Rejected = dict[Principal, AwsCallError]


def target_error_code(error: AwsCallError) -> TargetErrorCode:
    return {
        ErrorKind.INVALID_PRINCIPAL: TargetErrorCode.INVALID_ACCOUNT_ID,
        ErrorKind.ACCESS_DENIED: TargetErrorCode.ACCESS_DENIED,
        ErrorKind.THROTTLED: TargetErrorCode.THROTTLED,
    }.get(error.kind, TargetErrorCode.AWS_ERROR)


def grant_name(account_id: str) -> str:
    """The same name for the same grantee: a retried CreateGrant lands on the same grant."""
    return f"amishare-{account_id}"


@dataclass(frozen=True, slots=True)
class GrantToRevoke:
    key_arn: str
    grant_id: str
    principal: Principal  # the destination whose access it is


class SourceSteps:
    def __init__(
        self,
        source: SourceAccount,
        recorder: JobRecorder,
        locks: KeyLocks,
        retry: RetryPolicy,
        concurrency: int,
        partition: str = "aws",
        plan: PlanLog | None = None,
    ) -> None:
        self.source = source
        self.recorder = recorder
        self.locks = locks
        self.retry = retry
        self.concurrency = concurrency
        self.partition = partition  # of the job's Region: the `arn:<partition>:` of principals
        # Planning (POST /v1/plans): every change is recorded in the plan, none is made.
        self.plan = plan

    @classmethod
    def for_job(
        cls,
        source: SourceAccount,
        recorder: JobRecorder,
        locks: KeyLocks,
        settings: Settings,
        spec: JobSpec,
        plan: PlanLog | None = None,
    ) -> SourceSteps:
        """The steps of one job in its source account, bounded and retried as settings say."""
        return cls(
            source,
            recorder,
            locks,
            settings.retry_policy,
            settings.target_concurrency,
            spec.partition,
            plan,
        )

    def key_lock(self, key_arn: str) -> AbstractAsyncContextManager[None]:
        """Every edit of one key's policy and of its recorded access runs under this lock."""
        return self.locks.hold(f"kms-key:{key_arn}")

    async def fail_rejected(self, rejected: Rejected, step: Step) -> None:
        """Record rejected principals as failed, one statement per distinct error."""
        by_error: dict[tuple[TargetErrorCode, str], list[Principal]] = {}
        for principal, error in rejected.items():
            message = f"AWS refused {principal.value} in {error.operation}: {error.message}"
            by_error.setdefault((target_error_code(error), message), []).append(principal)
        for (code, message), principals in by_error.items():
            await self.recorder.fail(principals, step, code, message)

    # Key policy: one read and at most one write per key (more only to isolate a bad principal).
    # The caller holds the key's lock: PutKeyPolicy replaces the whole document.
    async def read_grantees(self, key_arn: str) -> set[KeyGrantee]:
        """Who our statements name now; a statement of ours in another shape stops the job."""
        return _grantees(key_arn, await self._read_policy(key_arn))

    async def grant_key_policy(self, key_arn: str, principals: Sequence[Principal]) -> Rejected:
        """Our statements name these principals (the route is recorded for each one named)."""
        rejected = await self._edit_key_policy(key_arn, principals, adding=True)
        named = [p for p in principals if p not in rejected]
        await self.recorder.record_key_access(key_arn, named, key_policy=True)
        return rejected

    async def revoke_key_policy(self, key_arn: str, principals: Sequence[Principal]) -> Rejected:
        return await self._edit_key_policy(key_arn, principals, adding=False)

    async def _read_policy(self, key_arn: str) -> dict[str, Any]:
        return parse_policy(await self.read(lambda: self.source.get_key_policy(key_arn)))

    async def _edit_key_policy(
        self, key_arn: str, principals: Sequence[Principal], *, adding: bool
    ) -> Rejected:
        if not principals:
            return {}
        policy = await self._read_policy(key_arn)

        async def put(batch: Sequence[Principal]) -> None:
            nonlocal policy
            present = _grantees(key_arn, policy)
            # The principals this edit adds (or removes): the others are already as wanted.
            moved = [p for p in batch if (grantee_of(p) in present) != adding]
            if not moved:
                return  # already as wanted (a resumed job): nothing to change
            wanted = {grantee_of(p) for p in moved}
            grantees = (present | wanted) if adding else (present - wanted)
            edited = with_grantees(policy, grantees, self.partition)
            _check_size(key_arn, edited)
            text = render_policy(edited)
            values = [p.value for p in moved]
            if self.plan is not None:
                self.plan.add(
                    PlannedChange(
                        "PutKeyPolicy",
                        key_arn,
                        added=values if adding else [],
                        removed=[] if adding else values,
                        policy_bytes_before=policy_size(policy),
                        policy_bytes_after=policy_size(edited),
                    )
                )
            else:
                detail = {"added" if adding else "removed": sorted(g.value for g in wanted)}
                await self.change(
                    "kms:PutKeyPolicy",
                    key_arn,
                    moved,
                    lambda: self.source.put_key_policy(key_arn, text, values),
                    detail,
                )
            policy = edited

        return await self.isolate(principals, put)

    # Grants: one per destination account and key, concurrently under the bound.
    async def create_grants(self, key_arn: str, accounts: Sequence[Principal]) -> Rejected:
        """One named grant per account; every grant ID is recorded as soon as it exists. An
        account the ledger records a grant of ours for (a resumed job, an earlier share) gets
        none while that grant is still on the key (one ListGrants, only then)."""
        accounts = await self._without_live_grant(key_arn, accounts)
        if self.plan is not None:
            if accounts:
                self.plan.add(
                    PlannedChange("CreateGrant", key_arn, added=[p.value for p in accounts])
                )
            return {}
        grants: dict[Principal, str] = {}
        rejected: Rejected = {}
        changes: list[Change] = []

        async def create(principal: Principal) -> None:
            name = grant_name(principal.value)
            try:
                grant_id, change = await with_retries(
                    self.retry, lambda: self.source.create_grant(key_arn, principal.value, name)
                )
            except AwsCallError as error:
                await self._audit_failure("kms:CreateGrant", key_arn, [principal], error)
                rejected[principal] = error
                return
            changes.append(change)
            grants[principal] = grant_id

        # The audit rows of a thousand grants go in one write, not one transaction each; even
        # when the step is interrupted, the grants made so far are written and recorded.
        try:
            await self._bounded([partial(create, p) for p in accounts])
        finally:
            await self.recorder.changed(*changes)
            await self.recorder.record_key_access(key_arn, list(grants), grant_ids=grants)
        return rejected

    async def _without_live_grant(
        self, key_arn: str, accounts: Sequence[Principal]
    ) -> list[Principal]:
        recorded = await self.recorder.key_access(key_arn, accounts)
        known = {p: set(a.grant_ids) for p, a in recorded.items() if a.grant_ids}
        if not known:
            return list(accounts)
        live = {g.grant_id for g in await self.list_grants(key_arn)}
        return [p for p in accounts if not (known.get(p, set()) & live)]

    async def list_grants(self, key_arn: str) -> list[GrantInfo]:
        return await self.read(lambda: self.source.list_grants(key_arn))

    async def revoke_grants(self, grants: Sequence[GrantToRevoke]) -> Rejected:
        if self.plan is not None:
            for grant in grants:
                self.plan.add(
                    PlannedChange("RevokeGrant", grant.key_arn, removed=[grant.principal.value])
                )
            return {}
        rejected: Rejected = {}
        changes: list[Change] = []

        async def revoke(grant: GrantToRevoke) -> None:
            try:
                change = await with_retries(
                    self.retry, lambda: self.source.revoke_grant(grant.key_arn, grant.grant_id)
                )
            except AwsCallError as error:
                await self._audit_failure(
                    "kms:RevokeGrant",
                    grant.key_arn,
                    [grant.principal],
                    error,
                    {"grant_id": grant.grant_id},
                )
                rejected[grant.principal] = error
                return
            if change is not None:  # the audit trail names whose grant it was
                changes.append(replace(change, principals=(grant.principal.value,)))

        try:
            await self._bounded([partial(revoke, g) for g in grants])
        finally:
            await self.recorder.changed(*changes)
        return rejected

    # Snapshots: one call per snapshot per 500 accounts (no org/OU form exists).
    async def add_snapshot_permission(
        self,
        snapshot_ids: Sequence[str],
        accounts: Sequence[Principal],
        recorded: Mapping[Principal, Collection[str]] | None = None,
    ) -> Rejected:
        """createVolumePermission on every snapshot. An account is left out of a snapshot's
        call only where the ledger `recorded` that snapshot for it and AWS shows it too: EC2
        is eventually consistent, so AWS's view alone may still show a permission a revoke
        has just taken away."""
        if not accounts:
            return {}
        given = recorded or {}

        async def lacking(snapshot_id: str) -> list[Principal]:
            holders = await self.read(partial(self.source.snapshot_permissions, snapshot_id))
            return [
                p for p in accounts if not (p.value in holders and snapshot_id in given.get(p, ()))
            ]

        todo = await asyncio.gather(*(lacking(s) for s in snapshot_ids))
        return await self._snapshot_permission(dict(zip(snapshot_ids, todo, strict=True)), True)

    async def remove_snapshot_permission(
        self, snapshot_ids: Sequence[str], accounts: Sequence[Principal]
    ) -> Rejected:
        """Sent for every account asked, whatever AWS shows now (removing what is not there
        changes nothing; a view that lags a share just made must not leave it in place)."""
        return await self._snapshot_permission({s: list(accounts) for s in snapshot_ids}, False)

    async def _snapshot_permission(
        self, accounts_of: Mapping[str, Sequence[Principal]], adding: bool
    ) -> Rejected:
        """Every snapshot and every chunk of 500 accounts at once: they are independent."""
        modify = (
            self.source.add_snapshot_permission
            if adding
            else self.source.remove_snapshot_permission
        )

        async def apply(snapshot_id: str, batch: Sequence[Principal]) -> None:
            ids = [p.value for p in batch]
            await self.change(
                "ec2:ModifySnapshotAttribute",
                snapshot_id,
                batch,
                lambda: modify(snapshot_id, ids),
                removing=not adding,
            )

        return await _all_settled(
            self.isolate(chunk, partial(apply, snapshot_id))
            for snapshot_id, accounts in accounts_of.items()
            for chunk in chunked(accounts, SNAPSHOT_BATCH)
        )

    # Launch permission: one call per 500 principals.
    async def add_launch_permission(
        self,
        image_id: str,
        principals: Sequence[Principal],
        recorded: Collection[Principal] = (),
    ) -> Rejected:
        """A principal is left out only where the ledger `recorded` its launch permission and
        AWS shows it too (see add_snapshot_permission)."""
        if not principals:
            return {}
        present = {
            p.value for p in await self.read(lambda: self.source.launch_permissions(image_id))
        }
        todo = [p for p in principals if not (p.value in present and p in recorded)]
        return await self._launch_permission(image_id, todo, adding=True)

    async def remove_launch_permission(
        self, image_id: str, principals: Sequence[Principal]
    ) -> Rejected:
        """Sent for every principal asked, whatever AWS shows now (as for snapshots)."""
        return await self._launch_permission(image_id, principals, adding=False)

    async def _launch_permission(
        self, image_id: str, principals: Sequence[Principal], *, adding: bool
    ) -> Rejected:
        modify = (
            self.source.add_launch_permission if adding else self.source.remove_launch_permission
        )

        async def apply(batch: Sequence[Principal]) -> None:
            await self.change(
                "ec2:ModifyImageAttribute",
                image_id,
                batch,
                lambda: modify(image_id, batch),
                removing=not adding,
            )

        # Chunks side by side: each adds (or removes) its own principals.
        return await _all_settled(
            self.isolate(chunk, apply) for chunk in chunked(principals, LAUNCH_PERMISSION_BATCH)
        )

    # The mechanics every step shares.
    async def read(self, call: Callable[[], Awaitable[T]]) -> T:
        """A source-side read: retried, and a job-level failure if it still fails."""
        try:
            return await with_retries(self.retry, call)
        except AwsCallError as error:
            raise source_failure(error) from error

    async def change(
        self,
        api: str,
        resource: str,
        batch: Sequence[Principal],
        call: Callable[[], Awaitable[Change]],
        detail: dict[str, Any] | None = None,
        *,
        removing: bool = False,
    ) -> None:
        """A source-side modification: retried, and audited whether it lands or not (when
        planning, recorded in the plan and not made)."""
        if self.plan is not None:
            values = [p.value for p in batch]
            added, removed = ([], values) if removing else (values, [])
            self.plan.add(PlannedChange(api.split(":", 1)[1], resource, added, removed))
            return
        try:
            change = await with_retries(self.retry, call)
        except AwsCallError as error:
            await self._audit_failure(api, resource, batch, error, detail)
            raise
        if detail:
            change = replace(change, detail={**change.detail, **detail})
        await self.recorder.changed(change)

    async def isolate(
        self,
        principals: Sequence[Principal],
        apply: Callable[[Sequence[Principal]], Awaitable[None]],
    ) -> Rejected:
        """Apply in one batch, isolating principals AWS rejects; other errors stop the job."""
        try:
            return await apply_isolating_rejects(principals, apply)
        except AwsCallError as error:
            raise source_failure(error) from error

    async def _audit_failure(
        self,
        api: str,
        resource: str,
        batch: Sequence[Principal],
        error: AwsCallError,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await self.recorder.change_failed(
            api,
            resource,
            [p.value for p in batch],
            error.code,
            error.message,
            error.request_id,
            detail,
        )

    async def _bounded(self, works: Sequence[Callable[[], Awaitable[None]]]) -> None:
        """Run every piece of work, at most `concurrency` at a time."""
        bound = asyncio.Semaphore(self.concurrency)

        async def one(work: Callable[[], Awaitable[None]]) -> None:
            async with bound:
                await work()

        async with asyncio.TaskGroup() as group:
            for work in works:
                group.create_task(one(work))


def _grantees(key_arn: str, policy: dict[str, Any]) -> set[KeyGrantee]:
    try:
        return grantees_in_policy(policy)
    except KeyPolicyConflictError as conflict:
        raise JobFailedError(
            JobErrorCode.KEY_POLICY_CONFLICT,
            f"The policy of {key_arn} has a {conflict} (a Sid amishare uses for its own "
            "statements, in a shape it never writes). amishare changes only its own "
            "statements: rename that statement's Sid, or remove it, and retry.",
        ) from conflict


def _check_size(key_arn: str, policy: dict[str, object]) -> None:
    size = policy_size(policy)
    if size > KEY_POLICY_MAX_BYTES:
        raise JobFailedError(
            JobErrorCode.KEY_POLICY_TOO_LARGE,
            f"The policy of {key_arn} would be {size} bytes with these destinations; AWS allows "
            f"{KEY_POLICY_MAX_BYTES}. Use kms_access 'grant', or share with an organization or "
            "OU instead of many accounts.",
        )


async def _all_settled(works: Iterable[Awaitable[Rejected]]) -> Rejected:
    """Run side by side; every call has ended before the first error is raised."""
    outcomes = await asyncio.gather(*works, return_exceptions=True)
    rejected: Rejected = {}
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        rejected |= outcome
    return rejected
