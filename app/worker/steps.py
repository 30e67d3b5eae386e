"""The source-side AWS steps, both ways: grant and take back key access, snapshot permission and
launch permission. Each reads current state and applies the difference, in batches, isolating a
principal that AWS rejects; each change is audited whether it lands or not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from app.aws.errors import AwsCallError, ErrorKind
from app.aws.gateway import Change, SourceAccount
from app.domain.errors import JobErrorCode, JobFailedError, TargetErrorCode
from app.domain.key_policy import (
    KEY_POLICY_MAX_BYTES,
    grant_in_policy,
    grantee_of,
    grantees_in_policy,
    parse_policy,
    policy_size,
    render_policy,
    revoke_from_policy,
)
from app.domain.principals import Principal
from app.domain.types import Step
from app.worker.batching import apply_isolating_rejects, chunked
from app.worker.inspection import source_failure
from app.worker.locks import KeyLocks
from app.worker.recorder import JobRecorder
from app.worker.retry import RetryPolicy, with_retries

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
class GrantToRetire:
    key_arn: str
    grant_id: str
    principal: Principal


class SourceSteps:
    def __init__(
        self,
        source: SourceAccount,
        recorder: JobRecorder,
        locks: KeyLocks,
        retry: RetryPolicy,
        concurrency: int,
    ) -> None:
        self.source = source
        self.recorder = recorder
        self.locks = locks
        self.retry = retry
        self.concurrency = concurrency

    async def fail_rejected(self, rejected: Rejected, step: Step) -> None:
        """Record rejected principals as failed, one statement per distinct error."""
        by_error: dict[tuple[TargetErrorCode, str], list[Principal]] = {}
        for principal, error in rejected.items():
            message = f"AWS refused {principal.value} in {error.operation}: {error.message}"
            by_error.setdefault((target_error_code(error), message), []).append(principal)
        for (code, message), principals in by_error.items():
            await self.recorder.fail(principals, step, code, message)

    # Key policy: one read and at most one write per key (more only to isolate a bad principal).
    async def grant_key_policy(self, key_arn: str, principals: Sequence[Principal]) -> Rejected:
        return await self._edit_key_policy(key_arn, principals, adding=True)

    async def revoke_key_policy(self, key_arn: str, principals: Sequence[Principal]) -> None:
        await self._edit_key_policy(key_arn, principals, adding=False)

    async def _edit_key_policy(
        self, key_arn: str, principals: Sequence[Principal], *, adding: bool
    ) -> Rejected:
        if not principals:
            return {}
        async with self.locks.hold(f"kms-key:{key_arn}"):
            policy = parse_policy(await self.read(lambda: self.source.get_key_policy(key_arn)))

            async def put(batch: Sequence[Principal]) -> None:
                nonlocal policy
                present = grantees_in_policy(policy)
                wanted = {grantee_of(p) for p in batch}
                if (wanted <= present) if adding else not (wanted & present):
                    return  # already as wanted (a resumed job): nothing to change
                edited = (grant_in_policy if adding else revoke_from_policy)(policy, batch)
                _check_size(key_arn, edited)
                text = render_policy(edited)
                await self.change(
                    "kms:PutKeyPolicy",
                    key_arn,
                    batch,
                    lambda: self.source.put_key_policy(key_arn, text, [p.value for p in batch]),
                )
                policy = edited

            return await self.isolate(principals, put)

    # Grants: one per destination account and key, concurrently under the bound.
    async def create_grants(
        self, key_arns: Sequence[str], accounts: Sequence[Principal]
    ) -> tuple[dict[Principal, dict[str, str]], Rejected]:
        grants: dict[Principal, dict[str, str]] = {}
        rejected: Rejected = {}
        changes: list[Change] = []

        async def create(principal: Principal, key_arn: str) -> None:
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
            grants.setdefault(principal, {})[key_arn] = grant_id

        # The audit rows of a thousand grants go in one write, not one transaction each; even
        # when the step is interrupted, the grants made so far are written.
        try:
            await self._bounded([partial(create, p, k) for p in accounts for k in key_arns])
        finally:
            await self.recorder.changed(*changes)
        return grants, rejected

    async def retire_grants(self, grants: Sequence[GrantToRetire]) -> Rejected:
        rejected: Rejected = {}
        changes: list[Change] = []

        async def retire(grant: GrantToRetire) -> None:
            try:
                change = await with_retries(
                    self.retry, lambda: self.source.retire_grant(grant.key_arn, grant.grant_id)
                )
            except AwsCallError as error:
                await self._audit_failure(
                    "kms:RevokeGrant", grant.key_arn, [grant.principal], error
                )
                rejected[grant.principal] = error
                return
            if change is not None:
                changes.append(change)

        try:
            await self._bounded([partial(retire, g) for g in grants])
        finally:
            await self.recorder.changed(*changes)
        return rejected

    # Snapshots: one call per snapshot per 500 accounts (no org/OU form exists).
    async def add_snapshot_permission(
        self, snapshot_ids: Sequence[str], accounts: Sequence[Principal]
    ) -> Rejected:
        return await self._snapshot_permission(snapshot_ids, accounts, adding=True)

    async def remove_snapshot_permission(
        self, snapshot_ids: Sequence[str], accounts: Sequence[Principal]
    ) -> Rejected:
        return await self._snapshot_permission(snapshot_ids, accounts, adding=False)

    async def _snapshot_permission(
        self, snapshot_ids: Sequence[str], accounts: Sequence[Principal], *, adding: bool
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
                "ec2:ModifySnapshotAttribute", snapshot_id, batch, lambda: modify(snapshot_id, ids)
            )

        return await _all_settled(
            self.isolate(chunk, partial(apply, snapshot_id))
            for snapshot_id in snapshot_ids
            for chunk in chunked(accounts, SNAPSHOT_BATCH)
        )

    # Launch permission: one call per 500 principals.
    async def add_launch_permission(
        self, image_id: str, principals: Sequence[Principal]
    ) -> Rejected:
        return await self._launch_permission(image_id, principals, adding=True)

    async def remove_launch_permission(
        self, image_id: str, principals: Sequence[Principal]
    ) -> Rejected:
        return await self._launch_permission(image_id, principals, adding=False)

    async def _launch_permission(
        self, image_id: str, principals: Sequence[Principal], *, adding: bool
    ) -> Rejected:
        modify = (
            self.source.add_launch_permission if adding else self.source.remove_launch_permission
        )

        async def apply(batch: Sequence[Principal]) -> None:
            await self.change(
                "ec2:ModifyImageAttribute", image_id, batch, lambda: modify(image_id, batch)
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
    ) -> None:
        """A source-side modification: retried, and audited whether it lands or not."""
        try:
            change = await with_retries(self.retry, call)
        except AwsCallError as error:
            await self._audit_failure(api, resource, batch, error)
            raise
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
        self, api: str, resource: str, batch: Sequence[Principal], error: AwsCallError
    ) -> None:
        await self.recorder.change_failed(
            api, resource, [p.value for p in batch], error.code, error.message, error.request_id
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
