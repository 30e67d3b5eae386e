"""The only door to AWS: what the executor may ask of the source and destination accounts."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.domain.principals import Principal


@dataclass(frozen=True, slots=True)
class RoleSession:
    """Who acts, as CloudTrail shows it: the session name carries the job's ID and
    SourceIdentity the name of the token that created the job."""

    job_id: str
    source_identity: str | None = None

    @property
    def name(self) -> str:
        return f"amishare-{self.job_id}"[:64]  # RoleSessionName: at most 64 characters


@dataclass(frozen=True, slots=True)
class ImageInfo:
    image_id: str
    owner_id: str
    state: str
    root_device_type: str
    snapshot_ids: tuple[str, ...]
    name: str | None = None
    # User tags as the caller sees them (its own images: all of them; `aws:` ones left out).
    tags: dict[str, str] = field(default_factory=dict)
    state_reason: str | None = None  # why a copy `failed`


@dataclass(frozen=True, slots=True)
class CopyRequest:
    """CopyImage in the caller's account and Region, re-encrypted with `kms_key_id` (None: the
    caller's default EBS key); `client_token` makes a repeated request land on the same copy."""

    source_image_id: str
    source_region: str
    name: str
    client_token: str
    kms_key_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # on the copy and its snapshots


@dataclass(frozen=True, slots=True)
class GrantInfo:
    """One grant on a key, as ListGrants shows it."""

    grant_id: str
    name: str | None
    grantee_principal: str
    issuing_account: str | None


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    snapshot_id: str
    encrypted: bool
    kms_key_id: str | None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_arn: str
    key_manager: str  # "AWS" or "CUSTOMER"
    enabled: bool = True

    @property
    def is_aws_managed(self) -> bool:
        return self.key_manager == "AWS"


@dataclass(frozen=True, slots=True)
class Change:
    """One AWS modification that happened, for the audit trail."""

    api: str
    resource: str
    principals: tuple[str, ...] = ()
    request_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class ImageCopier(Protocol):
    """An account that copies images into itself: the source (re-encryption, other Regions)
    or a destination (`copy`)."""

    account_id: str

    async def copy_image(self, request: CopyRequest) -> tuple[str, Change]:
        """The new image's ID (the same one for a repeated client token)."""
        ...

    async def own_image(self, image_id: str) -> ImageInfo | None:
        """One of the account's own images (a copy it made), or None when there is none."""
        ...

    async def images_tagged(self, key: str, value: str) -> list[ImageInfo]:
        """The account's own images with this tag (a copy found again without its ID)."""
        ...

    async def deregister_image(self, image_id: str) -> Change | None:
        """None when the image is already gone."""
        ...

    async def describe_own_key(self, key_id: str) -> KeyInfo | None:
        """A key of the account by ID, ARN or alias; None when it does not exist."""
        ...


class SourceAccount(ImageCopier, Protocol):
    """The account that owns the image and its keys."""

    account_id: str

    async def describe_image(self, image_id: str) -> ImageInfo | None: ...

    async def launch_permissions(self, image_id: str) -> list[Principal]: ...

    async def snapshot_permissions(self, snapshot_id: str) -> set[str]:
        """The accounts with createVolumePermission on the snapshot."""
        ...

    async def describe_snapshots(self, snapshot_ids: Sequence[str]) -> list[SnapshotInfo]: ...

    async def describe_key(self, key_id: str) -> KeyInfo: ...

    async def get_key_policy(self, key_arn: str) -> str: ...

    async def put_key_policy(
        self, key_arn: str, policy: str, principals: Sequence[str]
    ) -> Change: ...

    async def create_grant(
        self, key_arn: str, grantee_account_id: str, name: str
    ) -> tuple[str, Change]:
        """Returns the grant ID; the same name and grantee give back the same grant."""
        ...

    async def list_grants(self, key_arn: str) -> list[GrantInfo]:
        """Every grant on the key (all pages)."""
        ...

    async def revoke_grant(self, key_arn: str, grant_id: str) -> Change | None:
        """None when the grant is already gone."""
        ...

    async def add_snapshot_permission(
        self, snapshot_id: str, account_ids: Sequence[str]
    ) -> Change: ...

    async def remove_snapshot_permission(
        self, snapshot_id: str, account_ids: Sequence[str]
    ) -> Change: ...

    async def add_launch_permission(
        self, image_id: str, principals: Sequence[Principal]
    ) -> Change: ...

    async def remove_launch_permission(
        self, image_id: str, principals: Sequence[Principal]
    ) -> Change: ...


class DestinationAccount(ImageCopier, Protocol):
    """A destination account, seen through the destination role."""

    account_id: str

    async def can_see_image(self, image_id: str) -> bool: ...

    async def can_use_key(self, key_arn: str) -> bool: ...


class AwsGateway(Protocol):
    async def own_account_id(self) -> str: ...

    def source(
        self, account_id: str, region: str, session: RoleSession | None = None
    ) -> AbstractAsyncContextManager[SourceAccount]: ...

    def destination(
        self, account_id: str, region: str, session: RoleSession | None = None
    ) -> AbstractAsyncContextManager[DestinationAccount]: ...
