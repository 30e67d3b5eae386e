"""A share job (DESIGN.md, "A share job, step by step").

Source-side calls are one per key, per snapshot and per batch of principals, whatever the number
of destinations; destination-side work runs concurrently under a bound. Every step reads the
current state and applies the difference, so running it again after a crash is harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from app.aws.errors import AwsCallError, ErrorKind
from app.aws.gateway import AwsGateway, Change, SourceAccount
from app.domain.errors import JobErrorCode, JobFailedError, TargetErrorCode
from app.domain.jobs import JobSpec, ShareRecord
from app.domain.key_policy import (
    KEY_POLICY_MAX_BYTES,
    grant_in_policy,
    grantee_of,
    grantees_in_policy,
    parse_policy,
    policy_size,
    render_policy,
)
from app.domain.principals import Principal
from app.domain.types import KmsAccess, Step
from app.worker.batching import apply_isolating_rejects, chunked
from app.worker.inspection import Inspection, inspect_image, source_failure
from app.worker.locks import KeyLocks
from app.worker.recorder import JobRecorder
from app.worker.retry import RetryPolicy, with_retries
from app.worker.verification import Verifier

T = TypeVar("T")

SNAPSHOT_BATCH = 500  # ModifySnapshotAttribute takes at most 500 user IDs per call
LAUNCH_PERMISSION_BATCH = 500
SNAPSHOT_ORG_NOTE = (
    "Snapshots not shared: AWS has no organization or OU form of createVolumePermission. "
    "Launching works; copying the AMI needs snapshot access granted per account."
)


@dataclass(frozen=True, slots=True)
class ProcedureSettings:
    target_concurrency: int
    retry: RetryPolicy


def target_error_code(error: AwsCallError) -> TargetErrorCode:
    return {
        ErrorKind.INVALID_PRINCIPAL: TargetErrorCode.INVALID_ACCOUNT_ID,
        ErrorKind.ACCESS_DENIED: TargetErrorCode.ACCESS_DENIED,
        ErrorKind.THROTTLED: TargetErrorCode.THROTTLED,
    }.get(error.kind, TargetErrorCode.AWS_ERROR)


def shares_snapshots(spec: JobSpec, principal: Principal) -> bool:
    return spec.share_snapshots and principal.is_account


def grant_name(account_id: str) -> str:
    """The same name for the same grantee: a retried CreateGrant lands on the same grant."""
    return f"amishare-{account_id}"


class ShareProcedure:
    def __init__(
        self,
        gateway: AwsGateway,
        locks: KeyLocks,
        recorder: JobRecorder,
        verifier: Verifier | None,
        settings: ProcedureSettings,
    ) -> None:
        self.gateway = gateway
        self.locks = locks
        self.recorder = recorder
        self.verifier = verifier
        self.settings = settings

    @property
    def retry(self) -> RetryPolicy:
        return self.settings.retry

    async def run(self, spec: JobSpec, targets: Sequence[Principal]) -> None:
        await self.recorder.start(targets)
        live = list(targets)
        async with self.gateway.source(spec.source_account_id, spec.region) as source:
            found = await inspect_image(source, spec.image_id, self.retry)
            grants: dict[Principal, dict[str, str]] = {}
            if spec.kms_access is KmsAccess.KEY_POLICY and found.keys:
                live = await self._key_policies(source, found, live)
            elif spec.kms_access is KmsAccess.GRANT and found.keys:
                live, grants = await self._grants(source, found, live)
            if spec.share_snapshots:
                live = await self._snapshot_permissions(source, found, live)
            live = await self._launch_permission(source, spec.image_id, live)
        if spec.verify and self.verifier is not None:
            await self.recorder.reach(live, Step.VERIFY)
            live = await self.verifier.verify(spec, found.key_arns, live)
        await self.recorder.reach(live, Step.LEDGER)
        await self.recorder.record_shares(
            [
                ShareRecord(
                    principal=p,
                    kms_key_ids=found.key_arns,
                    snapshot_ids=found.snapshot_ids
                    if spec.share_snapshots and p.is_account
                    else (),
                    grant_ids=grants.get(p, {}),
                )
                for p in live
            ]
        )
        await self.recorder.succeed(live, Step.LEDGER)

    async def _fail_rejected(self, rejected: dict[Principal, AwsCallError], step: Step) -> None:
        by_error: dict[tuple[TargetErrorCode, str], list[Principal]] = {}
        for principal, error in rejected.items():
            code = target_error_code(error)
            message = f"AWS refused {principal.value} in {error.operation}: {error.message}"
            by_error.setdefault((code, message), []).append(principal)
        for (code, message), principals in by_error.items():
            await self.recorder.fail(principals, step, code, message)

    async def _source(self, call: Callable[[], Awaitable[T]]) -> T:
        """A source-side read: retried, and a job-level failure if it still fails."""
        try:
            return await with_retries(self.retry, call)
        except AwsCallError as error:
            raise source_failure(error) from error

    async def _change(
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
            await self._change_failed(api, resource, batch, error)
            raise
        await self.recorder.changed(change)

    async def _change_failed(
        self, api: str, resource: str, batch: Sequence[Principal], error: AwsCallError
    ) -> None:
        await self.recorder.change_failed(
            api, resource, [p.value for p in batch], error.code, error.message, error.request_id
        )

    async def _isolate(
        self,
        principals: Sequence[Principal],
        apply: Callable[[Sequence[Principal]], Awaitable[None]],
    ) -> dict[Principal, AwsCallError]:
        """Apply in one batch, isolating principals AWS rejects; other errors stop the job."""
        try:
            return await apply_isolating_rejects(principals, apply)
        except AwsCallError as error:
            raise source_failure(error) from error

    # Step 2: key access through the key policy — one read and one write per key.
    async def _key_policies(
        self, source: SourceAccount, found: Inspection, live: list[Principal]
    ) -> list[Principal]:
        await self.recorder.reach(live, Step.KMS_ACCESS)
        rejected: dict[Principal, AwsCallError] = {}
        for key_arn in found.key_arns:
            rejected |= await self._merge_into_key_policy(source, key_arn, live)
        await self._fail_rejected(rejected, Step.KMS_ACCESS)
        return [p for p in live if p not in rejected]

    async def _merge_into_key_policy(
        self, source: SourceAccount, key_arn: str, principals: list[Principal]
    ) -> dict[Principal, AwsCallError]:
        async with self.locks.hold(f"kms-key:{key_arn}"):
            text = await self._source(lambda: source.get_key_policy(key_arn))
            policy = parse_policy(text)

            async def put(batch: Sequence[Principal]) -> None:
                nonlocal policy
                present = grantees_in_policy(policy)
                if all(grantee_of(p) in present for p in batch):
                    return  # already there (a resumed job): nothing to change
                merged = grant_in_policy(policy, batch)
                if policy_size(merged) > KEY_POLICY_MAX_BYTES:
                    raise JobFailedError(
                        JobErrorCode.KEY_POLICY_TOO_LARGE,
                        f"The policy of {key_arn} would be {policy_size(merged)} bytes with these "
                        f"destinations; AWS allows {KEY_POLICY_MAX_BYTES}. Use kms_access 'grant', "
                        "or share with an organization or OU instead of many accounts.",
                    )
                await self._change(
                    "kms:PutKeyPolicy",
                    key_arn,
                    batch,
                    lambda: source.put_key_policy(
                        key_arn, render_policy(merged), [p.value for p in batch]
                    ),
                )
                policy = merged

            return await self._isolate(principals, put)

    # Step 2, the other way: one grant per destination account and key.
    async def _grants(
        self, source: SourceAccount, found: Inspection, live: list[Principal]
    ) -> tuple[list[Principal], dict[Principal, dict[str, str]]]:
        await self.recorder.reach(live, Step.KMS_ACCESS)
        grants: dict[Principal, dict[str, str]] = {}
        rejected: dict[Principal, AwsCallError] = {}
        bound = asyncio.Semaphore(self.settings.target_concurrency)

        async def grant(principal: Principal, key_arn: str) -> None:
            async with bound:
                try:
                    grant_id, change = await with_retries(
                        self.retry,
                        lambda: source.create_grant(
                            key_arn, principal.value, grant_name(principal.value)
                        ),
                    )
                except AwsCallError as error:
                    await self._change_failed("kms:CreateGrant", key_arn, [principal], error)
                    rejected[principal] = error
                    return
                await self.recorder.changed(change)
                grants.setdefault(principal, {})[key_arn] = grant_id

        accounts = [p for p in live if p.is_account]
        async with asyncio.TaskGroup() as group:
            for principal in accounts:
                for key_arn in found.key_arns:
                    group.create_task(grant(principal, key_arn))
        await self._fail_rejected(rejected, Step.KMS_ACCESS)
        return [p for p in live if p not in rejected], grants

    # Step 3: createVolumePermission — one call per snapshot per 500 accounts.
    async def _snapshot_permissions(
        self, source: SourceAccount, found: Inspection, live: list[Principal]
    ) -> list[Principal]:
        await self.recorder.reach(live, Step.SNAPSHOTS)
        accounts = [p for p in live if p.is_account]
        rejected: dict[Principal, AwsCallError] = {}
        for snapshot_id in found.snapshot_ids:
            for chunk in chunked(accounts, SNAPSHOT_BATCH):

                async def add(batch: Sequence[Principal], snapshot_id: str = snapshot_id) -> None:
                    await self._change(
                        "ec2:ModifySnapshotAttribute",
                        snapshot_id,
                        batch,
                        lambda: source.add_snapshot_permission(
                            snapshot_id, [p.value for p in batch]
                        ),
                    )

                rejected |= await self._isolate([p for p in chunk if p not in rejected], add)
        organizations = [p for p in live if not p.is_account]
        if organizations:
            await self.recorder.note(organizations, SNAPSHOT_ORG_NOTE)
        await self._fail_rejected(rejected, Step.SNAPSHOTS)
        return [p for p in live if p not in rejected]

    # Step 4: launch permission — one call per 500 principals.
    async def _launch_permission(
        self, source: SourceAccount, image_id: str, live: list[Principal]
    ) -> list[Principal]:
        await self.recorder.reach(live, Step.LAUNCH_PERMISSION)
        rejected: dict[Principal, AwsCallError] = {}
        for chunk in chunked(live, LAUNCH_PERMISSION_BATCH):

            async def add(batch: Sequence[Principal]) -> None:
                await self._change(
                    "ec2:ModifyImageAttribute",
                    image_id,
                    batch,
                    lambda: source.add_launch_permission(image_id, batch),
                )

            rejected |= await self._isolate(chunk, add)
        await self._fail_rejected(rejected, Step.LAUNCH_PERMISSION)
        return [p for p in live if p not in rejected]
