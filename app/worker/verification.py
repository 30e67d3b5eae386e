"""Step 5: from inside each destination, see the image and the key (eventually consistent)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial

from app.aws.call_errors import AwsCallError
from app.aws.gateway import AwsGateway, DestinationAccount, RoleSession
from app.config import Settings
from app.domain.codes import TargetErrorCode
from app.domain.job_spec import JobSpec
from app.domain.principals import Principal
from app.logs import destination_context
from app.worker.accounts import destination_account
from app.worker.failures import TargetFailure, destination_failure
from app.worker.ports import JobRecorder
from app.worker.retry import with_retries

log = logging.getLogger(__name__)
NOT_VERIFIED_NOTE = "Not verified: an organization or OU has no single account to look from."


class Verifier:
    def __init__(self, gateway: AwsGateway, recorder: JobRecorder, settings: Settings) -> None:
        self.gateway = gateway
        self.recorder = recorder
        self.settings = settings

    async def verify(
        self, spec: JobSpec, key_arns: Sequence[str], live: Sequence[Principal]
    ) -> tuple[list[Principal], dict[Principal, TargetFailure], list[Principal]]:
        """(passed, failed, unchecked): `unchecked` are the destinations not looked at because
        the job was cancelled meanwhile. Failures are the caller's to record, once what the
        job gave those destinations has been taken back."""
        bound = asyncio.Semaphore(self.settings.target_concurrency)
        failed: dict[Principal, TargetFailure] = {}
        unchecked: list[Principal] = []
        cancel = CancelWatch(self.recorder)
        session = RoleSession(spec.job_id, spec.created_by or None)

        async def check(principal: Principal) -> None:
            async with bound:
                if await cancel.requested():
                    unchecked.append(principal)
                    return
                with destination_context(principal.value):
                    failure = await self._check_one(spec, key_arns, principal.value, session)
                    if failure is not None:
                        log.warning(
                            "destination check failed",
                            extra={"code": failure.code, "detail": failure.message},
                        )
            if failure is not None:
                failed[principal] = failure

        async with asyncio.TaskGroup() as group:
            for principal in live:
                if principal.is_account:
                    group.create_task(check(principal))
        organizations = [p for p in live if not p.is_account]
        if organizations:
            await self.recorder.note(organizations, NOT_VERIFIED_NOTE)
        skipped = set(unchecked)
        passed = [p for p in live if p not in failed and p not in skipped]
        return passed, failed, unchecked

    async def _check_one(
        self, spec: JobSpec, key_arns: Sequence[str], account_id: str, session: RoleSession
    ) -> TargetFailure | None:
        """Assume the destination role and look; a throttled or failing AssumeRole is retried
        within the step's budget like any other call."""
        retry = self.settings.retry_policy
        attempt = 0
        while True:
            try:
                async with self.gateway.destination(
                    account_id, spec.region, session
                ) as destination:
                    return await self._wait_until_visible(destination, spec.image_id, key_arns)
            except AwsCallError as error:
                attempt += 1
                if not error.retryable or attempt >= retry.max_attempts:
                    return destination_failure(account_id, error)
                await asyncio.sleep(retry.delay(attempt))

    async def _wait_until_visible(
        self, destination: DestinationAccount, image_id: str, key_arns: Sequence[str]
    ) -> TargetFailure | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.verify_timeout_seconds
        delay = self.settings.verify_initial_delay_seconds
        while True:
            missing = await self._missing(destination, image_id, key_arns)
            if not missing:
                return None
            if loop.time() + delay > deadline:
                return TargetFailure(
                    TargetErrorCode.NOT_VISIBLE_IN_DESTINATION,
                    f"After {self.settings.verify_timeout_seconds:.0f}s account "
                    f"{destination.account_id} still "
                    f"cannot see {missing}. Check the destination role's permissions, or retry: "
                    "AWS can take minutes to propagate.",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)

    async def _missing(
        self, destination: DestinationAccount, image_id: str, key_arns: Sequence[str]
    ) -> str | None:
        """What the destination cannot see yet; the image and each key are asked at once."""
        retry = self.settings.retry_policy
        checks = [with_retries(retry, partial(destination.can_see_image, image_id))]
        checks += [with_retries(retry, partial(destination.can_use_key, k)) for k in key_arns]
        image_visible, *keys_usable = await asyncio.gather(*checks)
        if not image_visible:
            return f"the image {image_id}"
        for key_arn, usable in zip(key_arns, keys_usable, strict=True):
            if not usable:
                return f"the key {key_arn}"
        return None


class CancelWatch:
    """Asks whether the job was cancelled, at most once a second however many ask."""

    def __init__(self, recorder: JobRecorder, interval: float = 1.0) -> None:
        self.recorder = recorder
        self.interval = interval
        self._checked_at = -interval
        self._cancelled = False
        self._lock = asyncio.Lock()

    async def requested(self) -> bool:
        async with self._lock:
            now = asyncio.get_running_loop().time()
            if not self._cancelled and now - self._checked_at >= self.interval:
                self._cancelled = await self.recorder.cancel_requested()
                self._checked_at = now
            return self._cancelled


class Unshared:
    """After a revoke: from inside each destination, the image is no longer launchable there
    (eventually consistent, so looked at with bounded backoff like a share's verification)."""

    def __init__(self, gateway: AwsGateway, settings: Settings) -> None:
        self.gateway = gateway
        self.settings = settings

    async def still_visible(
        self, spec: JobSpec, accounts: Sequence[Principal]
    ) -> dict[Principal, TargetFailure]:
        bound = asyncio.Semaphore(self.settings.target_concurrency)
        failed: dict[Principal, TargetFailure] = {}

        async def check(principal: Principal) -> None:
            async with bound:
                with destination_context(principal.value):
                    failure = await self._check_one(spec, principal)
            if failure is not None:
                failed[principal] = failure

        async with asyncio.TaskGroup() as group:
            for principal in accounts:
                group.create_task(check(principal))
        return failed

    async def _check_one(self, spec: JobSpec, principal: Principal) -> TargetFailure | None:
        retry = self.settings.retry_policy
        try:
            async with destination_account(
                self.gateway, principal.value, spec, retry
            ) as destination:
                return await self._wait_until_gone(destination, spec.image_id)
        except AwsCallError as error:
            return destination_failure(principal.value, error)

    async def _wait_until_gone(
        self, destination: DestinationAccount, image_id: str
    ) -> TargetFailure | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.verify_timeout_seconds
        delay = self.settings.verify_initial_delay_seconds
        retry = self.settings.retry_policy
        while await with_retries(retry, lambda: destination.can_see_image(image_id)):
            if loop.time() + delay > deadline:
                return TargetFailure(
                    TargetErrorCode.STILL_VISIBLE_IN_DESTINATION,
                    f"After {self.settings.verify_timeout_seconds:.0f}s account "
                    f"{destination.account_id} can still see {image_id}: someone may have "
                    "shared it again, or AWS is slow to propagate; look, and retry the job.",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)
        return None
