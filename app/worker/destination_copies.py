"""Step 6 of a share with `copy`: each destination account copies the shared image into itself,
re-encrypted with its own key, tags carried, and the worker waits until the copy is available.

The copy is made through the destination role, with a client token derived from the job, the
image and the destination (and the copy that failed before, if one did), so a resumed job never
makes a second copy; the copy's ID is on the target before it is waited for. AWS calls run under
the job's concurrency bound; waiting does not hold it. A destination fails alone:
DestinationKeyUnavailable, CopyFailed, AccessDenied, DestinationRoleUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.aws.call_errors import AwsCallError, ErrorKind
from app.aws.gateway import AwsGateway, CopyRequest, DestinationAccount, ImageInfo
from app.config import Settings
from app.domain.codes import TargetErrorCode
from app.domain.copies import client_token, copy_name, user_tags
from app.domain.job_spec import JobSpec
from app.domain.principals import Principal
from app.domain.types import Step
from app.logs import destination_context
from app.worker.accounts import destination_account
from app.worker.copies import (
    CopyCancelledError,
    CopyFailedError,
    CopyWaits,
    request_copy,
    wait_until_available,
)
from app.worker.failures import TargetFailure, destination_failure
from app.worker.ports import JobRecorder
from app.worker.retry import with_retries
from app.worker.take_back import Refusal
from app.worker.verification import CancelWatch

log = logging.getLogger(__name__)
ORGANIZATION_NOTE = "Not copied: an organization or OU has no single account to copy into."


@dataclass
class CopyOutcome:
    copied: dict[Principal, str] = field(default_factory=dict)
    refused: dict[Principal, Refusal] = field(default_factory=dict)
    cancelled: list[Principal] = field(default_factory=list)


class DestinationCopies:
    def __init__(self, gateway: AwsGateway, recorder: JobRecorder, settings: Settings) -> None:
        self.gateway = gateway
        self.recorder = recorder
        self.settings = settings
        self.waits = CopyWaits.of(settings)

    async def copy(
        self, spec: JobSpec, shared: ImageInfo, live: Sequence[Principal]
    ) -> CopyOutcome:
        assert spec.copy is not None
        outcome = CopyOutcome()
        accounts = [p for p in live if p.is_account]
        organizations = [p for p in live if not p.is_account]
        if organizations:
            await self.recorder.note(organizations, ORGANIZATION_NOTE)
        earlier = await self.recorder.copies(accounts)
        # A copy an earlier share made under the same key is the destination's already.
        shared_before = {
            p: row.copied_image_id
            for p, row in (await self.recorder.shares(accounts)).items()
            if row.copied_image_id and row.copy_kms_key_id == spec.copy.kms_key_id
        }
        bound = asyncio.Semaphore(self.settings.target_concurrency)
        watch = CancelWatch(self.recorder)

        async def one(principal: Principal) -> None:
            with destination_context(principal.value):
                try:
                    image_id = await self._copy_one(
                        spec,
                        shared,
                        principal,
                        (earlier.get(principal), shared_before.get(principal)),
                        bound,
                        watch,
                    )
                except CopyCancelledError:
                    outcome.cancelled.append(principal)
                    return
                except CopyFailedError as failed:
                    outcome.refused[principal] = _refusal(
                        TargetFailure(TargetErrorCode.COPY_FAILED, f"Copy failed: {failed}.")
                    )
                    return
                except _KeyUnavailableError as missing:
                    failure = TargetFailure(
                        TargetErrorCode.DESTINATION_KEY_UNAVAILABLE, str(missing)
                    )
                    outcome.refused[principal] = _refusal(failure)
                    return
                except AwsCallError as error:
                    outcome.refused[principal] = _refusal(_copy_failure(principal.value, error))
                    return
            outcome.copied[principal] = image_id

        async with asyncio.TaskGroup() as group:
            for principal in accounts:
                group.create_task(one(principal))
        return outcome

    async def _copy_one(
        self,
        spec: JobSpec,
        shared: ImageInfo,
        principal: Principal,
        earlier: tuple[str | None, str | None],
        bound: asyncio.Semaphore,
        watch: CancelWatch,
    ) -> str:
        """`earlier`: this job's copy for the target (a resumed job), and the one the ledger
        has from an earlier share under the same key."""
        assert spec.copy is not None
        retry = self.settings.retry_policy
        own_earlier, shared_before = earlier
        async with contextlib.AsyncExitStack() as stack:
            async with bound:  # the calls run under the job's bound; the waiting does not
                dest = await stack.enter_async_context(
                    destination_account(self.gateway, principal.value, spec, retry)
                )
                image_id = await self._reuse(dest, own_earlier) or await self._reuse(
                    dest, shared_before
                )
                if image_id is None:
                    image_id = await self._request(
                        dest, spec, shared, principal, own_earlier, watch
                    )
                elif image_id != own_earlier:
                    await self.recorder.record_copy(principal, image_id)
            try:
                await wait_until_available(
                    dest, image_id, self.waits, self.settings, watch.requested
                )
            except CopyCancelledError:
                await self._deregister_pending(dest, image_id)
                raise
        return image_id

    async def _request(
        self,
        dest: DestinationAccount,
        spec: JobSpec,
        shared: ImageInfo,
        principal: Principal,
        earlier: str | None,
        watch: CancelWatch,
    ) -> str:
        """CopyImage in the destination; the copy is on the target before it is waited for."""
        assert spec.copy is not None
        await self._check_key(dest, spec.copy.kms_key_id)
        request = CopyRequest(
            source_image_id=shared.image_id,
            source_region=spec.region,
            name=copy_name(shared.name, shared.image_id, "copy of"),
            # A copy that failed before is named in the token: the new request is a new copy.
            client_token=client_token(
                "copy", spec.job_id, shared.image_id, principal.value, earlier or ""
            ),
            kms_key_id=spec.copy.kms_key_id,
            tags=user_tags(shared.tags) if spec.copy.copy_tags else {},
        )
        image_id, change = await request_copy(
            dest, request, self.waits, self.settings, watch.requested
        )
        await self.recorder.record_copy(principal, image_id)
        await self.recorder.changed(change)
        return image_id

    async def _reuse(self, dest: DestinationAccount, earlier: str | None) -> str | None:
        """A copy made before that is still pending or available."""
        if earlier is None:
            return None
        retry = self.settings.retry_policy
        image = await with_retries(retry, lambda: dest.own_image(earlier))
        return earlier if image is not None and image.state in ("pending", "available") else None

    async def _check_key(self, dest: DestinationAccount, key_id: str | None) -> None:
        if key_id is None:
            return  # the destination's default EBS key
        retry = self.settings.retry_policy
        key = await with_retries(retry, lambda: dest.describe_own_key(key_id))
        if key is None or not key.enabled:
            state = "does not exist" if key is None else "is not enabled"
            raise _KeyUnavailableError(
                f"The key {key_id} {state} in account {dest.account_id}: create it (or the "
                "alias) there, or name another key in copy.kms_key_id."
            )

    async def _deregister_pending(self, dest: DestinationAccount, image_id: str) -> None:
        """The job was cancelled: a copy still pending is stopped (an available one is the
        destination's, and stays)."""
        retry = self.settings.retry_policy
        with contextlib.suppress(AwsCallError):
            image = await with_retries(retry, lambda: dest.own_image(image_id))
            if image is not None and image.state == "pending":
                change = await with_retries(retry, lambda: dest.deregister_image(image_id))
                if change is not None:
                    await self.recorder.changed(change)


class _KeyUnavailableError(Exception):
    """The destination's key for its copy does not exist or is not enabled."""


def _refusal(failure: TargetFailure) -> Refusal:
    return Refusal(Step.COPY, failure.code, failure.message)


def _copy_failure(account_id: str, error: AwsCallError) -> TargetFailure:
    """KMS trouble with the destination's key is the destination's key being unavailable."""
    key_trouble = error.operation == "ec2:CopyImage" and (
        "kms" in error.code.lower() or "kms" in error.message.lower()
    )
    if key_trouble and error.kind is not ErrorKind.THROTTLED:
        return TargetFailure(
            TargetErrorCode.DESTINATION_KEY_UNAVAILABLE,
            f"AWS refused the copy's key in {account_id} ({error.code}): {error.message}",
        )
    return destination_failure(account_id, error)
