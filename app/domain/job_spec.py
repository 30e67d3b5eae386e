"""What a worker needs to know about a job to run it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

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
    # The job's other Regions, each with the customer-managed key its copy is encrypted with.
    regions: tuple[str, ...] = ()
    region_kms_key_ids: Mapping[str, str] = field(default_factory=dict)
    # On the spec of one of `regions` (see in_region): the Region the image itself is in.
    source_region: str | None = None
    # A reconcile: grant again what AWS lost (repair), take back what the ledger lacks (prune).
    repair: bool = False
    prune: bool = False

    @property
    def partition(self) -> str:
        return partition_of(self.region)

    @property
    def all_regions(self) -> tuple[str, ...]:
        return (self.region, *self.regions)

    def in_region(self, region: str) -> JobSpec:
        """The job as it runs in `region`: the job's own spec for its own Region; for another,
        one that shares the source's copy of the image in that Region."""
        if region == self.region:
            return self
        return replace(self, region=region, regions=(), source_region=self.region)

    @property
    def region_key(self) -> str | None:
        """In another Region: the key of the image's copy there."""
        return self.region_kms_key_ids.get(self.region) if self.source_region else None
