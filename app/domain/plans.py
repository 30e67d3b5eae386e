"""A plan: what a job would change on AWS, found by running the job's own procedure with every
change recorded instead of made (POST /v1/plans)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PlannedChange:
    """One AWS change a job would make. Launch and snapshot permission changes of one resource
    are one entry (the job may send them in several calls of 500)."""

    api: str  # AWS's name: PutKeyPolicy, CreateGrant, RevokeGrant, ModifySnapshotAttribute, …
    resource: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    policy_bytes_before: int | None = None
    policy_bytes_after: int | None = None
    account: str | None = None  # CopyImage: the account that copies
    region: str | None = None  # where it is made (set by the planner, or by CopyImage itself)

    @property
    def principals(self) -> list[str]:
        return [*self.added, *self.removed, *([self.account] if self.account else [])]


@dataclass(frozen=True, slots=True)
class KeptKeyAccess:
    """A revoke keeps this key access: other shares (images, or unfinished jobs) need it."""

    principal: str
    kms_key_id: str
    needed_by: tuple[str, ...]


@dataclass
class PlanLog:
    """What the planned job would do, as its procedure goes."""

    changes: list[PlannedChange] = field(default_factory=list)
    kept_key_access: list[KeptKeyAccess] = field(default_factory=list)
    # Region -> why planning stopped there (a copy the plan cannot look into before it exists)
    stopped: dict[str, str] = field(default_factory=dict)
    # Each of the job's Regions plans into its own log (changes are regional).
    regions: dict[str, PlanLog] = field(default_factory=dict)

    def for_region(self, region: str) -> PlanLog:
        return self.regions.setdefault(region, PlanLog())

    def add(self, change: PlannedChange) -> None:
        for known in self.changes:
            if (known.api, known.resource, known.account) == (
                change.api,
                change.resource,
                change.account,
            ) and change.api != "PutKeyPolicy":
                known.added += [p for p in change.added if p not in known.added]
                known.removed += [p for p in change.removed if p not in known.removed]
                return
        self.changes.append(change)
