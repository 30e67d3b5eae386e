"""Making a copy and waiting for it: bounded, with few looks, never a second copy.

A copy is asked for with a client token derived from what makes it unique, so a repeated
request (a retried call, a resumed job) lands on the same copy; its ID is recorded before it is
waited for. It is looked at every quarter of the time waited so far (at least
AMISHARE_COPY_POLL_SECONDS, at most AMISHARE_COPY_POLL_MAX_SECONDS), not every second, until
AMISHARE_COPY_TIMEOUT_SECONDS. AWS's limit of concurrent copies (ResourceLimitExceeded) is
waited out with a doubling wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from app.aws.call_errors import AwsCallError
from app.aws.gateway import Change, CopyRequest, ImageCopier, ImageInfo
from app.config import Settings
from app.domain.copies import (
    SOURCE_IMAGE_TAG,
    SourceCopy,
    client_token,
    copy_name,
    user_tags,
)
from app.worker.ports import JobRecorder
from app.worker.retry import with_retries

COPY_LIMIT = "ResourceLimitExceeded"


class CopyFailedError(Exception):
    """The copy went `failed`, vanished, or was not available in time."""


class CopyCancelledError(Exception):
    """The job was cancelled while the copy was pending."""


@dataclass(frozen=True, slots=True)
class CopyWaits:
    """How copies are waited for (from Settings)."""

    timeout: float
    first: float
    longest: float

    @classmethod
    def of(cls, settings: Settings) -> CopyWaits:
        return cls(
            settings.copy_timeout_seconds,
            settings.copy_poll_seconds,
            settings.copy_poll_max_seconds,
        )


Cancelled = Callable[[], Awaitable[bool]]


async def _never() -> bool:
    return False


async def request_copy(
    copier: ImageCopier,
    request: CopyRequest,
    waits: CopyWaits,
    settings: Settings,
    cancelled: Cancelled = _never,
) -> tuple[str, Change]:
    """CopyImage, waiting out the concurrent-copy limit; (image ID, the audit change)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + waits.timeout
    delay = waits.first
    while True:
        try:
            return await with_retries(settings.retry_policy, lambda: copier.copy_image(request))
        except AwsCallError as error:
            if error.code != COPY_LIMIT or loop.time() + delay > deadline:
                raise
        await _pause(delay, cancelled)
        delay = min(delay * 2, waits.longest)


async def wait_until_available(
    copier: ImageCopier,
    image_id: str,
    waits: CopyWaits,
    settings: Settings,
    cancelled: Cancelled = _never,
) -> ImageInfo:
    """The copy once `available`; CopyFailedError when it failed, vanished or took too long."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + waits.timeout
    while True:
        image = await with_retries(settings.retry_policy, lambda: copier.own_image(image_id))
        if image is None:
            raise CopyFailedError(f"the copy {image_id} is gone (deregistered?)")
        if image.state == "available":
            return image
        if image.state not in ("pending", "transient"):
            reason = f": {image.state_reason}" if image.state_reason else ""
            raise CopyFailedError(f"the copy {image_id} is '{image.state}'{reason}")
        # A quarter of the time waited so far: a copy is seen at most about 25% after it ends,
        # in a few dozen looks however long it takes.
        delay = min(max(waits.first, (loop.time() - started) / 4), waits.longest)
        if loop.time() + delay > deadline:
            raise CopyFailedError(
                f"the copy {image_id} was not available after {waits.timeout:.0f}s "
                "(AMISHARE_COPY_TIMEOUT_SECONDS); it may still finish"
            )
        await _pause(delay, cancelled)


async def _pause(seconds: float, cancelled: Cancelled) -> None:
    """Sleep, looking at the job's cancel flag about once a second."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while (left := until - loop.time()) > 0:
        await asyncio.sleep(min(left, 1.0))
        if await cancelled():
            raise CopyCancelledError


async def copy_in_source(
    copier: ImageCopier,
    recorder: JobRecorder,
    source: ImageInfo,
    source_region: str,
    region: str,
    kms_key_id: str,
    settings: Settings,
    cancelled: Cancelled = _never,
) -> str:
    """The source account's copy of `source` in `region` under `kms_key_id`: the one made
    before (by any job) when it still exists, else a new one; the copy's ID once available."""
    waits = CopyWaits.of(settings)
    record = await recorder.source_copy(source.image_id, source_region, region, kms_key_id)
    token_parts = (source.image_id, source_region, region, kms_key_id)
    if record is None:
        record = SourceCopy(*token_parts, client_token=client_token("source", *token_parts))
    if record.image_id is None:  # lost from the database, or never answered: look on AWS
        tag = _tag_value(record)
        found = await with_retries(
            settings.retry_policy, lambda: copier.images_tagged(SOURCE_IMAGE_TAG, tag)
        )
        usable = [i for i in found if i.state in ("available", "pending")]
        if usable:
            record = replace(record, image_id=usable[0].image_id, state=usable[0].state)
    if record.image_id is not None:
        made = record.image_id
        existing = await with_retries(settings.retry_policy, lambda: copier.own_image(made))
        if existing is None or existing.state not in ("available", "pending"):
            # Gone or failed: a new copy, under a new token (the old one names the dead copy).
            record = replace(
                record,
                image_id=None,
                state="pending",
                client_token=client_token("source", *token_parts, record.image_id),
            )
    if record.image_id is None:
        tags = {**user_tags(source.tags), SOURCE_IMAGE_TAG: _tag_value(record)}
        request = CopyRequest(
            source_image_id=source.image_id,
            source_region=source_region,
            name=copy_name(source.name, source.image_id, "amishare copy of"),
            client_token=record.client_token,
            kms_key_id=kms_key_id,
            tags=tags,
        )
        image_id, change = await request_copy(copier, request, waits, settings)
        await recorder.changed(change)
        record = replace(record, image_id=image_id, state="pending")
        await recorder.record_source_copy(record)
    assert record.image_id is not None
    try:
        await wait_until_available(copier, record.image_id, waits, settings, cancelled)
    except CopyFailedError:
        await recorder.record_source_copy(replace(record, state="failed"))
        raise
    await recorder.record_source_copy(replace(record, state="available"))
    return record.image_id


def _tag_value(record: SourceCopy) -> str:
    """What the copy's tag says: which image, Region and key it is the copy for."""
    return f"{record.source_image_id}/{record.source_region}/{record.kms_key_id}"[:256]
