"""A revoke job (DESIGN.md, "A revoke job"): launch permission, then snapshots, then key access —
and key access only where nothing else in the ledger still needs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.aws.gateway import AwsGateway, ImageInfo
from app.domain.errors import JobErrorCode, JobFailedError
from app.domain.jobs import JobSpec, LedgerShare
from app.domain.principals import Principal
from app.domain.types import KmsAccess, Step
from app.worker.inspection import key_arns_of_image
from app.worker.locks import KeyLocks
from app.worker.recorder import JobRecorder
from app.worker.retry import RetryPolicy
from app.worker.steps import GrantToRetire, SourceSteps

NEVER_SHARED_NOTE = "Was not shared with this principal: nothing to revoke."


@dataclass(frozen=True, slots=True)
class RevokeSettings:
    target_concurrency: int
    retry: RetryPolicy


async def release_key_access(
    steps: SourceSteps,
    recorder: JobRecorder,
    key_arns: Sequence[str],
    principals: Sequence[Principal],
    ledger: dict[Principal, LedgerShare],
    default_access: KmsAccess,
) -> set[Principal]:
    """Take key access back from `principals`, except where another share still needs it.

    Key policy statements and grants are separate ways in: each is removed only when no other
    active share (or unfinished share job) of that principal relies on that same way in.
    Returns the principals whose access could not be taken back (recorded as failed).
    """
    failed: set[Principal] = set()

    def access_of(principal: Principal) -> KmsAccess:
        share = ledger.get(principal)
        return share.kms_access if share else default_access

    for key_arn in key_arns:
        keep = await recorder.key_users_elsewhere(key_arn, principals)
        by_policy = [
            p
            for p in principals
            if access_of(p) is KmsAccess.KEY_POLICY and (p.value, KmsAccess.KEY_POLICY) not in keep
        ]
        await steps.revoke_key_policy(key_arn, by_policy)
        grants = [
            GrantToRetire(key_arn, grant_id, p)
            for p in principals
            if p in ledger and (p.value, KmsAccess.GRANT) not in keep
            for granted_key, grant_id in ledger[p].grant_ids.items()
            if granted_key == key_arn
        ]
        rejected = await steps.retire_grants(grants)
        await steps.fail_rejected(rejected, Step.KMS_ACCESS)
        failed.update(rejected)
    return failed


class RevokeProcedure:
    def __init__(
        self,
        gateway: AwsGateway,
        locks: KeyLocks,
        recorder: JobRecorder,
        settings: RevokeSettings,
    ) -> None:
        self.gateway = gateway
        self.locks = locks
        self.recorder = recorder
        self.settings = settings

    async def run(self, spec: JobSpec, targets: Sequence[Principal]) -> None:
        await self.recorder.start(targets)
        ledger = await self.recorder.ledger(targets)
        async with self.gateway.source(spec.source_account_id, spec.region) as source:
            steps = SourceSteps(
                source,
                self.recorder,
                self.locks,
                self.settings.retry,
                self.settings.target_concurrency,
            )
            image = await steps.read(lambda: source.describe_image(spec.image_id))
            if image is not None and image.owner_id != source.account_id:
                raise JobFailedError(
                    JobErrorCode.IMAGE_NOT_OWNED,
                    f"{spec.image_id} is owned by {image.owner_id}, not by the source account "
                    f"{source.account_id}; only the owner can revoke its sharing.",
                )
            granted = await self._currently_granted(steps, image)
            never = [p for p in targets if p not in ledger and p.value not in granted]
            if never:
                await self.recorder.note(never, NEVER_SHARED_NOTE)
            live = [p for p in targets if p not in never]
            live = await self._launch_permission(steps, spec, image, live)
            live = await self._snapshots(steps, spec, image, live, ledger)
            if spec.kms_access is not KmsAccess.NONE:
                await self.recorder.reach(live, Step.KMS_ACCESS)
                key_arns = await self._key_arns(steps, image, live, ledger)
                failed = await release_key_access(
                    steps, self.recorder, key_arns, live, ledger, spec.kms_access
                )
                live = [p for p in live if p not in failed]
        await self.recorder.forget_shares(live)
        await self.recorder.succeed(list(never) + live, Step.LEDGER)

    async def _currently_granted(self, steps: SourceSteps, image: ImageInfo | None) -> set[str]:
        if image is None:
            return set()
        permissions = await steps.read(lambda: steps.source.launch_permissions(image.image_id))
        return {p.value for p in permissions}

    async def _launch_permission(
        self, steps: SourceSteps, spec: JobSpec, image: ImageInfo | None, live: list[Principal]
    ) -> list[Principal]:
        await self.recorder.reach(live, Step.LAUNCH_PERMISSION)
        if image is None:
            return live  # the image is gone: so is its launch permission
        rejected = await steps.remove_launch_permission(spec.image_id, live)
        await steps.fail_rejected(rejected, Step.LAUNCH_PERMISSION)
        return [p for p in live if p not in rejected]

    async def _snapshots(
        self,
        steps: SourceSteps,
        spec: JobSpec,
        image: ImageInfo | None,
        live: list[Principal],
        ledger: dict[Principal, LedgerShare],
    ) -> list[Principal]:
        if not spec.share_snapshots:
            return live
        await self.recorder.reach(live, Step.SNAPSHOTS)
        snapshot_ids = set(image.snapshot_ids if image else ())
        for share in ledger.values():
            snapshot_ids.update(share.snapshot_ids)
        accounts = [p for p in live if p.is_account]
        rejected = await steps.remove_snapshot_permission(sorted(snapshot_ids), accounts)
        await steps.fail_rejected(rejected, Step.SNAPSHOTS)
        return [p for p in live if p not in rejected]

    async def _key_arns(
        self,
        steps: SourceSteps,
        image: ImageInfo | None,
        live: list[Principal],
        ledger: dict[Principal, LedgerShare],
    ) -> list[str]:
        keys: set[str] = set()
        for principal in live:
            if principal in ledger:
                keys.update(ledger[principal].kms_key_ids)
        if image is not None:
            keys.update(await key_arns_of_image(steps, image))
        return sorted(keys)
