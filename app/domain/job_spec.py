"""What a worker needs to know about a job to run it."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.copies import CopyOptions
from app.domain.regions import partition_of
from app.domain.types import Action, KmsAccess


@dataclass(frozen=True, slots=True)
class JobSpec:
    job_id: str
    action: Action
    image_id: str
    region: str
    source_account_id: str
    kms_access: KmsAccess
    share_snapshots: bool
    verify: bool
    created_by: str = ""  # the token's name: SourceIdentity on every AssumeRole of the job
    copy: CopyOptions | None = None
    # A customer-managed key: an image under an AWS-managed key is shared as a copy under it.
    reencrypt_key: str | None = None
    # Set once the job shares a copy (`image_id` is then the copy's): the image asked for.
    source_image_id: str | None = None

    @property
    def partition(self) -> str:
        return partition_of(self.region)
