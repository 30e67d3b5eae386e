"""Step 1 of every job: look at the image, its snapshots and keys before changing anything."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

from app.aws.gateway import ImageInfo, KeyInfo, SnapshotInfo, SourceAccount
from app.domain.codes import JobErrorCode, JobFailedError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Inspection:
    image: ImageInfo
    snapshots: tuple[SnapshotInfo, ...]
    keys: tuple[KeyInfo, ...]

    @property
    def snapshot_ids(self) -> tuple[str, ...]:
        return tuple(s.snapshot_id for s in self.snapshots)

    @property
    def key_arns(self) -> tuple[str, ...]:
        return tuple(k.key_arn for k in self.keys)

    @property
    def under_aws_managed_key(self) -> bool:
        return any(k.is_aws_managed for k in self.keys)


class SourceReader(Protocol):
    """Source-side reads, retried, failing the job when they still fail (SourceSteps.read)."""

    source: SourceAccount

    async def read(self, call: Callable[[], Awaitable[T]]) -> T: ...


async def inspect_image(
    steps: SourceReader, image_id: str, *, reencrypting: bool = False
) -> Inspection:
    """Everything a share needs to know, or a JobFailedError saying why it cannot be shared.
    `reencrypting`: an image under an AWS-managed key is fine (it is shared as a copy)."""
    source = steps.source
    image = await steps.read(lambda: source.describe_image(image_id))
    if image is None:
        raise JobFailedError(
            JobErrorCode.IMAGE_NOT_FOUND,
            f"{image_id} does not exist in account {source.account_id} in this region.",
        )
    require_owner(image, source.account_id, "share it")
    if image.state != "available":
        raise JobFailedError(
            JobErrorCode.IMAGE_NOT_AVAILABLE,
            f"{image_id} is '{image.state}'; wait until it is 'available'.",
        )
    if image.root_device_type != "ebs" or not image.snapshot_ids:
        raise JobFailedError(
            JobErrorCode.INSTANCE_STORE_NOT_SUPPORTED,
            f"{image_id} is instance-store backed; only EBS-backed AMIs can be shared this way.",
        )
    snapshots, keys = await _snapshots_and_keys(steps, image)
    managed = [k.key_arn for k in keys if k.is_aws_managed]
    if managed and not reencrypting:
        raise JobFailedError(
            JobErrorCode.AWS_MANAGED_KEY,
            f"{image_id} has snapshots encrypted with the AWS managed key {managed[0]} "
            '(alias/aws/ebs), which cannot be shared. Give the job reencrypt: {"kms_key_id": '
            '"<a customer managed key>"} and amishare shares a copy re-encrypted with it '
            "(CopyImage in the source account).",
        )
    return Inspection(image, tuple(snapshots), tuple(keys))


def require_owner(image: ImageInfo, account_id: str, to_do: str) -> None:
    """Only the image's owner can change who may use it."""
    if image.owner_id != account_id:
        raise JobFailedError(
            JobErrorCode.IMAGE_NOT_OWNED,
            f"{image.image_id} is owned by {image.owner_id}, not by the source account "
            f"{account_id}; only the owner can {to_do}.",
        )


async def _snapshots_and_keys(
    steps: SourceReader, image: ImageInfo
) -> tuple[list[SnapshotInfo], list[KeyInfo]]:
    """The image's snapshots and the KMS keys that encrypt them."""
    snapshots = await steps.read(lambda: steps.source.describe_snapshots(image.snapshot_ids))
    key_ids = sorted({s.kms_key_id for s in snapshots if s.encrypted and s.kms_key_id})
    keys = [await steps.read(partial(steps.source.describe_key, k)) for k in key_ids]
    return snapshots, keys


async def key_arns_of_image(steps: SourceReader, image: ImageInfo) -> list[str]:
    """The customer-managed keys behind an image's snapshots (for taking access back)."""
    _snapshots, keys = await _snapshots_and_keys(steps, image)
    return [k.key_arn for k in keys if not k.is_aws_managed]
