"""In-memory stand-ins for the worker's two doors, after procrastinate's InMemoryConnector.

- `InMemoryRecorder` is a JobRecorder (app/worker/ports.py) that keeps what the database would:
  the job's targets, its audit events, and the ledger (`share` and `key_access` rows, merged as
  app/db/ledger.py merges them). Recorders of several jobs share one `InMemoryLedger`.
- `FakeAws` is an AwsGateway (app/aws/gateway.py) whose `FakeSourceAccount` keeps images,
  snapshots, keys (customer and AWS managed), key policies as JSON text, grants, launch
  permissions and createVolumePermission. It refuses to give chosen principals access in chosen
  APIs the way AWS refuses a bad account (the whole call fails, nothing changes; taking access
  back is not refused, as AWS lets one remove an account that is gone), fails or throttles
  chosen calls, and records every call.
- `Worker` runs jobs through the real Executor against both.

AWS is modelled as far as gateway.py documents it, and no further.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from app.aws.call_errors import AwsCallError
from app.aws.gateway import (
    Change,
    GrantInfo,
    ImageInfo,
    KeyInfo,
    RoleSession,
    SnapshotInfo,
)
from app.config import Settings
from app.db.key_locks import ProcessKeyLocks
from app.domain.access import KeyAccess, ShareRecord, ShareUpdate
from app.domain.codes import JobFailedError
from app.domain.job_spec import JobSpec
from app.domain.outcome import final_job_status
from app.domain.principals import Principal
from app.domain.types import Action, JobStatus, KmsAccess, PrincipalType, Step, TargetStatus
from app.worker.executor import Executor

if TYPE_CHECKING:  # copies: being added to the worker (app/domain/copies.py)
    from app.aws.gateway import CopyRequest
    from app.domain.copies import SourceCopy

SOURCE = "123456789012"
REGION = "us-east-1"
KEY_POLICY_MAX_BYTES = 32 * 1024

# --------------------------------------------------------------------------- the recorder


@dataclass
class Target:
    """One job_target row."""

    principal: Principal
    status: TargetStatus = TargetStatus.PENDING
    step: Step = Step.PENDING
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None
    note: str | None = None
    copied_image_id: str | None = None
    drift: dict[str, Any] | None = None


@dataclass(frozen=True)
class Event:
    """One job_event row: an AWS change that landed ("ok") or was refused (its error code)."""

    api: str
    resource: str
    principals: tuple[str, ...]
    request_id: str | None
    outcome: str
    message: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class ShareRow:
    """One `share` row: what a principal was given of one image in one Region."""

    principal: Principal
    launch_permission: bool
    snapshot_ids: tuple[str, ...]
    kms_key_ids: tuple[str, ...]
    job_id: str
    kms_access: KmsAccess
    source_image_id: str | None = None  # the image is a copy of this one, made by the service
    copied_image_id: str | None = None  # the destination's own copy

    @property
    def record(self) -> ShareRecord:
        return ShareRecord(
            self.principal,
            self.launch_permission,
            self.snapshot_ids,
            self.kms_key_ids,
            self.job_id,
            self.kms_access,
        )


@dataclass
class InMemoryLedger:
    """The `share`, `key_access` and `image_copy` tables, and the jobs whose recorders write
    them."""

    # (image_id, region, principal value) -> the row
    shares: dict[tuple[str, str, str], ShareRow] = field(default_factory=dict)
    # (key ARN, principal value) -> the row
    key_access: dict[tuple[str, str], KeyAccess] = field(default_factory=dict)
    # (source image, source Region, Region, key) -> the copy the service made in the source
    source_copies: dict[tuple[str, str, str, str], SourceCopy] = field(default_factory=dict)
    jobs: dict[str, InMemoryRecorder] = field(default_factory=dict)

    def rows(self, image_id: str, region: str = REGION) -> dict[str, ShareRow]:
        return {p: r for (i, g, p), r in self.shares.items() if (i, g) == (image_id, region)}


_UNFINISHED = (TargetStatus.PENDING, TargetStatus.RUNNING)


class InMemoryRecorder:
    """A JobRecorder for one job, as app/worker/sql_recorder.py records it: target updates
    touch unfinished targets only, and ledger rows merge rather than overwrite."""

    def __init__(
        self, spec: JobSpec, targets: Sequence[Principal], ledger: InMemoryLedger | None = None
    ) -> None:
        self.spec = spec
        self.ledger = ledger if ledger is not None else InMemoryLedger()
        self.targets = {p: Target(p) for p in targets}
        self.events: list[Event] = []
        self.status = JobStatus.QUEUED
        self.cancelled = False  # set it: the job's cancel was requested
        self.failure: JobFailedError | None = None
        self.shared_image_id: str | None = None  # the job row's: set once it knows
        self.ledger.jobs[spec.job_id] = self

    # Reading it, for tests.
    def target(self, principal: Principal) -> Target:
        return self.targets[principal]

    def statuses(self) -> dict[str, TargetStatus]:
        return {p.value: t.status for p, t in self.targets.items()}

    def finish(self, failure: JobFailedError | None) -> None:
        """What the runner does once the executor returns (runner.py, `_finish`)."""
        self.failure = failure
        if failure is not None:
            for target in self.targets.values():
                if target.status in _UNFINISHED:
                    target.status = TargetStatus.FAILED
                    target.error_code, target.error_message = failure.code, failure.message
        counts: dict[TargetStatus, int] = {}
        for target in self.targets.values():
            counts[target.status] = counts.get(target.status, 0) + 1
        self.status = final_job_status(counts, job_error=failure is not None)

    def in_region(self, spec: JobSpec) -> InMemoryRecorder:
        """The unit specs run jobs in one Region: the job's own."""
        assert spec.region == self.spec.region, "the in-memory recorder knows one Region"
        self.spec = spec
        return self

    # Targets.
    def _update(self, principals: Sequence[Principal], change: Callable[[Target], None]) -> None:
        for principal in principals:
            assert principal in self.targets, f"{principal} is not a target of this job"
            target = self.targets[principal]
            if target.status in _UNFINISHED:
                change(target)

    async def start(self, principals: Sequence[Principal]) -> None:
        def start(target: Target) -> None:
            target.status, target.step = TargetStatus.RUNNING, Step.INSPECT
            target.attempts += 1
            target.error_code = target.error_message = target.note = None

        self._update(principals, start)

    async def reach(self, principals: Sequence[Principal], step: Step) -> None:
        self._update(principals, lambda t: setattr(t, "step", step))

    async def fail(
        self, principals: Sequence[Principal], step: Step, code: str, message: str
    ) -> None:
        def fail(target: Target) -> None:
            target.status, target.step = TargetStatus.FAILED, step
            target.error_code, target.error_message = code, message[:2000]

        self._update(principals, fail)

    async def succeed(self, principals: Sequence[Principal], step: Step) -> None:
        def succeed(target: Target) -> None:
            target.status, target.step = TargetStatus.SUCCEEDED, step

        self._update(principals, succeed)

    async def note(self, principals: Sequence[Principal], note: str) -> None:
        def add(target: Target) -> None:
            target.note = note if target.note is None else f"{target.note} {note}"

        self._update(principals, add)

    async def cancel(self, principals: Sequence[Principal], note: str) -> None:
        def cancel(target: Target) -> None:
            target.status, target.note = TargetStatus.CANCELLED, note

        self._update(principals, cancel)

    async def add_targets(self, principals: Sequence[Principal]) -> None:
        for principal in principals:
            self.targets.setdefault(principal, Target(principal))

    async def record_drift(self, principal: Principal, drift: Mapping[str, Any] | None) -> None:
        def record(target: Target) -> None:
            target.drift = dict(drift) if drift is not None else None

        self._update([principal], record)

    async def shared_principals(self) -> list[Principal]:
        return [
            row.principal
            for (image, region, _), row in self.ledger.shares.items()
            if image == self.spec.image_id and region == self.spec.region
        ]

    async def organization_shares(self) -> list[str]:
        return [
            row.principal.value
            for (image, region, _), row in self.ledger.shares.items()
            if image == self.spec.image_id
            and region == self.spec.region
            and not row.principal.is_account
            and row.launch_permission
        ]

    async def record_keys(self, key_arns: Sequence[str]) -> None:
        self.key_arns = sorted({*getattr(self, "key_arns", []), *key_arns})

    async def fail_unfinished(self, code: str, message: str) -> None:
        def fail(target: Target) -> None:
            target.status = TargetStatus.FAILED
            target.error_code, target.error_message = code, message[:2000]

        self._update(list(self.targets), fail)

    async def cancel_requested(self) -> bool:
        return self.cancelled

    # The audit trail.
    async def changed(self, *changes: Change) -> None:
        self.events += [
            Event(c.api, c.resource, c.principals, c.request_id, "ok", None, c.detail or None)
            for c in changes
        ]

    async def change_failed(
        self,
        api: str,
        resource: str,
        principals: Sequence[str],
        code: str,
        message: str,
        request_id: str | None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        event = Event(
            api, resource, tuple(principals), request_id, code, message, dict(detail or {}) or None
        )
        self.events.append(event)

    # The share ledger of this job's image and region.
    def _key(self, principal: Principal) -> tuple[str, str, str]:
        return (self.spec.image_id, self.spec.region, principal.value)

    async def shares(self, principals: Sequence[Principal]) -> dict[Principal, ShareRecord]:
        found = {p: self.ledger.shares.get(self._key(p)) for p in principals}
        return {p: row.record for p, row in found.items() if row is not None}

    async def record_shares(self, updates: Sequence[ShareUpdate]) -> None:
        """ShareLedger.merge: new rows are this job's; keys and snapshots are added to a row;
        a row whose launch permission is given anew becomes this job's."""
        for update in updates:
            copied = getattr(update, "copied_image_id", None)
            row = self.ledger.shares.get(self._key(update.principal))
            if row is None:
                self.ledger.shares[self._key(update.principal)] = ShareRow(
                    update.principal,
                    bool(update.launch_permission),
                    tuple(update.snapshot_ids),
                    tuple(update.kms_key_ids),
                    self.spec.job_id,
                    self.spec.kms_access,
                    getattr(self.spec, "source_image_id", None),
                    copied,
                )
                continue
            launch = (
                row.launch_permission
                if update.launch_permission is None
                else update.launch_permission
            )
            self.ledger.shares[self._key(update.principal)] = replace(
                row,
                launch_permission=launch,
                snapshot_ids=_union(row.snapshot_ids, update.snapshot_ids),
                kms_key_ids=_union(row.kms_key_ids, update.kms_key_ids),
                copied_image_id=copied or row.copied_image_id,
                job_id=self.spec.job_id if launch and not row.launch_permission else row.job_id,
            )

    async def complete_shares(self, principals: Sequence[Principal]) -> None:
        for principal in principals:
            row = self.ledger.shares.get(self._key(principal))
            if row is not None:
                self.ledger.shares[self._key(principal)] = replace(
                    row,
                    launch_permission=True,
                    job_id=self.spec.job_id,
                    kms_access=self.spec.kms_access,
                )

    async def settle_shares(
        self, remaining: Sequence[ShareRecord], gone: Sequence[Principal]
    ) -> None:
        """`gone` rows deleted; each remaining row says exactly what remains (inserted if
        missing, as this job's)."""
        for principal in gone:
            self.ledger.shares.pop(self._key(principal), None)
        missing: list[ShareUpdate] = []
        for left in remaining:
            row = self.ledger.shares.get(self._key(left.principal))
            if row is None:
                missing.append(
                    ShareUpdate(
                        left.principal, left.launch_permission, left.snapshot_ids, left.kms_key_ids
                    )
                )
            else:
                self.ledger.shares[self._key(left.principal)] = replace(
                    row,
                    launch_permission=left.launch_permission,
                    snapshot_ids=left.snapshot_ids,
                    kms_key_ids=left.kms_key_ids,
                )
        await self.record_shares(missing)

    # What the job shares, and the copies it makes.
    async def ledger_of(self, image_id: str, source_image_id: str | None) -> None:
        self.spec = replace(self.spec, image_id=image_id, source_image_id=source_image_id)

    async def sharing(self, image_id: str, source_image_id: str | None) -> None:
        await self.ledger_of(image_id, source_image_id)
        self.shared_image_id = image_id

    async def source_copy(
        self, source_image_id: str, source_region: str, region: str, kms_key_id: str
    ) -> SourceCopy | None:
        return self.ledger.source_copies.get((source_image_id, source_region, region, kms_key_id))

    async def record_source_copy(self, copy: SourceCopy) -> None:
        key = (copy.source_image_id, copy.source_region, copy.region, copy.kms_key_id)
        self.ledger.source_copies[key] = copy

    async def source_copies_of(self, image_id: str, region: str) -> list[str]:
        return [
            copy.image_id
            for (source, _, copy_region, _), copy in self.ledger.source_copies.items()
            if (source, copy_region) == (image_id, region) and copy.image_id
        ]

    async def copies(self, principals: Sequence[Principal]) -> dict[Principal, str]:
        found = {p: self.targets[p].copied_image_id for p in principals}
        return {p: image_id for p, image_id in found.items() if image_id}

    async def record_copy(self, principal: Principal, image_id: str) -> None:
        self._update([principal], lambda t: setattr(t, "copied_image_id", image_id))

    # The key-access ledger.
    async def key_access(
        self, key_arn: str, principals: Sequence[Principal]
    ) -> dict[Principal, KeyAccess]:
        found = {p: self.ledger.key_access.get((key_arn, p.value)) for p in principals}
        return {p: row for p, row in found.items() if row is not None}

    async def record_key_access(
        self,
        key_arn: str,
        principals: Sequence[Principal],
        *,
        key_policy: bool = False,
        grant_ids: Mapping[Principal, str] | None = None,
    ) -> None:
        grant_ids = grant_ids or {}
        for principal in principals:
            grant = (grant_ids[principal],) if principal in grant_ids else ()
            row = self.ledger.key_access.get((key_arn, principal.value))
            self.ledger.key_access[key_arn, principal.value] = (
                KeyAccess(key_arn, principal, key_policy, grant)
                if row is None
                else replace(
                    row,
                    key_policy=row.key_policy or key_policy,
                    grant_ids=_union(row.grant_ids, grant),
                )
            )

    async def forget_key_access(self, key_arn: str, principals: Sequence[Principal]) -> None:
        for principal in principals:
            self.ledger.key_access.pop((key_arn, principal.value), None)

    async def key_needed_elsewhere(
        self, key_arn: str, principals: Sequence[Principal]
    ) -> dict[Principal, list[str]]:
        """KeyAccessLedger.needed_elsewhere: active shares of other images under the key, and
        share jobs on other images not finished with these principals."""
        spec = self.spec
        needed: dict[Principal, set[str]] = {}
        for principal in principals:
            for (image_id, region, value), row in self.ledger.shares.items():
                if (
                    (value, region) == (principal.value, spec.region)
                    and image_id != spec.image_id
                    and row.launch_permission
                    and key_arn in row.kms_key_ids
                ):
                    needed.setdefault(principal, set()).add(image_id)
            for job_id, job in self.ledger.jobs.items():
                other = job.spec
                target = job.targets.get(principal)
                if (
                    other.action is Action.SHARE
                    and not job.status.is_finished
                    and job_id != spec.job_id
                    and other.image_id != spec.image_id
                    and other.region == spec.region
                    and target is not None
                    and target.status in _UNFINISHED
                ):
                    needed.setdefault(principal, set()).add(job_id)
        return {p: sorted(by) for p, by in needed.items()}


def _union(old: Sequence[str], new: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*old, *new]))


# --------------------------------------------------------------------------- AWS


@dataclass(frozen=True)
class Call:
    """One AWS call as the fake saw it: `outcome` is "ok" or the error code it answered."""

    account: str
    api: str
    resource: str
    principals: tuple[str, ...]
    outcome: str

    @property
    def mutating(self) -> bool:
        return self.api in MUTATING


MUTATING = frozenset(
    {
        "kms:PutKeyPolicy",
        "kms:CreateGrant",
        "kms:RevokeGrant",
        "ec2:ModifySnapshotAttribute",
        "ec2:ModifyImageAttribute",
        "ec2:CopyImage",
        "ec2:DeregisterImage",
    }
)
# What AWS answers a call giving access to a principal it refuses (malformed or unknown).
REFUSALS = {
    "ec2:ModifyImageAttribute": (
        "InvalidAMIAttributeItemValue",
        'Invalid attribute item value "{}"',
    ),
    "ec2:ModifySnapshotAttribute": (
        "InvalidAMIAttributeItemValue",
        'Invalid attribute item value "{}"',
    ),
    "kms:PutKeyPolicy": (
        "MalformedPolicyDocumentException",
        "Policy contains a statement with one or more invalid principals.",
    ),
    "kms:CreateGrant": ("InvalidArnException", "arn:aws:iam::{}:root is not a valid principal"),
    "sts:AssumeRole": ("AccessDenied", "Not authorized to assume a role in {}"),
}
# What KMS says when an edited policy would lock its caller out (its lockout safety check).
LOCKOUT_MESSAGE = "The new key policy will not allow you to update the key policy in the future."
THROTTLING = {
    "ec2": ("RequestLimitExceeded", 503),
    "kms": ("ThrottlingException", 400),
    "sts": ("Throttling", 400),
}


@dataclass
class Fault:
    """Calls of `api` (on `resource`, naming `principal`, if given) answer this error, `times`
    times (None: every time)."""

    api: str
    code: str
    message: str
    status: int
    resource: str | None = None
    principal: str | None = None
    times: int | None = None

    def matches(self, api: str, resource: str, principals: Sequence[str]) -> bool:
        return (
            self.api == api
            and self.resource in (None, resource)
            and (self.principal is None or self.principal in principals)
            and self.times != 0
        )


def root_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:root"


def _account_of(arn: str) -> str | None:
    match = re.fullmatch(r"(\d{12})|arn:aws[a-z-]*:iam::(\d{12}):.+", arn)
    return (match.group(1) or match.group(2)) if match else None


def _named_in(principal: str, policy: str) -> bool:
    """Whether a policy document names an account (its root) or an organization or OU (its
    `o-…` or `ou-…` ID, the last part of its ARN)."""
    return (root_arn(principal) if principal.isdigit() else principal.rsplit("/", 1)[-1]) in policy


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


class FakeAws:
    """The AwsGateway: source accounts by ID, destinations that look at them."""

    def __init__(self, own_account_id: str = "999999999999") -> None:
        self.own = own_account_id
        self.accounts: dict[str, FakeSourceAccount] = {}
        self.calls: list[Call] = []
        self.sessions: list[RoleSession | None] = []
        self._refused: dict[str, set[str]] = {}
        self._faults: list[Fault] = []
        self._after: dict[str, list[Callable[[], None]]] = {}
        self._request_ids = itertools.count(1)
        self.ids = itertools.count(1)  # of every resource made, in any account: unique

    # Setting the scene.
    def account(self, account_id: str = SOURCE) -> FakeSourceAccount:
        if account_id not in self.accounts:
            self.accounts[account_id] = FakeSourceAccount(self, account_id)
        return self.accounts[account_id]

    def refuse(self, api: str, *principals: str) -> None:
        """Every call of `api` that gives one of `principals` access fails as a whole, with the
        code AWS gives for a bad principal there (REFUSALS)."""
        self._refused.setdefault(api, set()).update(principals)

    def fail(
        self,
        api: str,
        code: str,
        message: str = "refused",
        *,
        status: int = 400,
        resource: str | None = None,
        principal: str | None = None,
        times: int | None = None,
    ) -> None:
        self._faults.append(Fault(api, code, message, status, resource, principal, times))

    def throttle(self, api: str, times: int | None = 1, principal: str | None = None) -> None:
        code, status = THROTTLING[api.split(":")[0]]
        self.fail(api, code, "Rate exceeded", status=status, principal=principal, times=times)

    def after(self, api: str, action: Callable[[], None]) -> None:
        """Run `action` after each call of `api` that lands (a cancel arriving meanwhile)."""
        self._after.setdefault(api, []).append(action)

    def find_image(self, image_id: str) -> ImageInfo | None:
        """The image in whichever account has it."""
        found = [a.images[image_id] for a in self.accounts.values() if image_id in a.images]
        return found[0] if found else None

    # Reading what happened.
    def calls_to(self, api: str) -> list[Call]:
        return [c for c in self.calls if c.api == api]

    def changes(self) -> list[Call]:
        """The modifications that landed, in order."""
        return [c for c in self.calls if c.mutating and c.outcome == "ok"]

    # The machinery of every call.
    async def call(
        self,
        account: str,
        api: str,
        resource: str,
        principals: Sequence[str] = (),
        *,
        gives: Sequence[str] = (),
        error: AwsCallError | None = None,
    ) -> str:
        """Record the call and return its request ID, or raise what AWS answers: a fault set
        on it, a refusal of a principal it `gives` access to, else `error` (the call's own)."""
        await asyncio.sleep(0)  # every call is a chance for other tasks to run, as on a network
        request_id = f"req-{next(self._request_ids)}"
        error = self._fault(api, resource, principals) or self._refusal(api, gives) or error
        self.calls.append(
            Call(account, api, resource, tuple(principals), error.code if error else "ok")
        )
        if error is not None:
            error.request_id = request_id
            raise error
        return request_id

    def landed(self, api: str) -> None:
        for action in self._after.get(api, []):
            action()

    def _fault(self, api: str, resource: str, principals: Sequence[str]) -> AwsCallError | None:
        for fault in self._faults:
            if not fault.matches(api, resource, principals):
                continue
            if fault.times is not None:
                fault.times -= 1
            return AwsCallError(api, fault.code, fault.message, status=fault.status)
        return None

    def _refusal(self, api: str, principals: Sequence[str]) -> AwsCallError | None:
        refused = [p for p in principals if p in self._refused.get(api, ())]
        if not refused:
            return None
        code, message = REFUSALS[api]
        status = 403 if code == "AccessDenied" else 400
        return AwsCallError(api, code, message.format(refused[0]), status=status)

    # AwsGateway.
    async def own_account_id(self) -> str:
        return self.own

    @asynccontextmanager
    async def source(
        self, account_id: str, region: str, session: RoleSession | None = None
    ) -> AsyncIterator[FakeSourceAccount]:
        role = f"arn:aws:iam::{account_id}:role/amishare-source"
        unknown = AwsCallError("sts:AssumeRole", "AccessDenied", f"cannot assume {role}")
        error = None if account_id in self.accounts else unknown
        await self.call(
            self.own, "sts:AssumeRole", role, (account_id,), gives=(account_id,), error=error
        )
        self.sessions.append(session)
        yield self.accounts[account_id]

    @asynccontextmanager
    async def destination(
        self, account_id: str, region: str, session: RoleSession | None = None
    ) -> AsyncIterator[FakeDestination]:
        role = f"arn:aws:iam::{account_id}:role/amishare-destination"
        await self.call(self.own, "sts:AssumeRole", role, (account_id,), gives=(account_id,))
        self.sessions.append(session)
        yield FakeDestination(self, account_id)


class FakeSourceAccount:
    """The account that owns images, snapshots and keys (one Region)."""

    def __init__(self, aws: FakeAws, account_id: str) -> None:
        self.aws = aws
        self.account_id = account_id
        self.images: dict[str, ImageInfo] = {}
        self.launch: dict[str, list[Principal]] = {}
        self.snapshots: dict[str, SnapshotInfo] = {}
        self.volume_permissions: dict[str, set[str]] = {}
        self.keys: dict[str, KeyInfo] = {}
        self.policies: dict[str, str] = {}
        self.grants: dict[str, list[GrantInfo]] = {}
        self._copies: dict[str, str] = {}  # client token -> the copy made for it
        self._ebs_key: str | None = None

    # Seeding: no call is recorded.
    def add_key(self, *, aws_managed: bool = False, policy: dict[str, Any] | None = None) -> str:
        key_arn = f"arn:aws:kms:{REGION}:{self.account_id}:key/key-{next(self.aws.ids):04d}"
        self.keys[key_arn] = KeyInfo(key_arn, "AWS" if aws_managed else "CUSTOMER")
        self.policies[key_arn] = json.dumps(policy or self.default_policy())
        self.grants[key_arn] = []
        return key_arn

    def default_policy(self) -> dict[str, Any]:
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Enable IAM User Permissions",
                    "Effect": "Allow",
                    "Principal": {"AWS": root_arn(self.account_id)},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }

    def add_image(
        self,
        *keys: str | None,
        state: str = "available",
        root_device_type: str = "ebs",
        owner_id: str | None = None,
    ) -> str:
        """An image with one snapshot per key given (None: an unencrypted snapshot)."""
        image_id = f"ami-{next(self.aws.ids):017x}"
        snapshot_ids = []
        for key_arn in keys if root_device_type == "ebs" else ():
            snapshot_id = f"snap-{next(self.aws.ids):017x}"
            self.snapshots[snapshot_id] = SnapshotInfo(snapshot_id, key_arn is not None, key_arn)
            self.volume_permissions[snapshot_id] = set()
            snapshot_ids.append(snapshot_id)
        self.images[image_id] = ImageInfo(
            image_id, owner_id or self.account_id, state, root_device_type, tuple(snapshot_ids)
        )
        self.launch[image_id] = []
        return image_id

    def add_grant(
        self, key_arn: str, grantee: str, *, name: str | None = None, issuer: str | None = None
    ) -> str:
        """A grant made outside any job: `issuer` (an account) made it, from a grant of ours."""
        grant_id = f"grant-{next(self.aws.ids):04d}"
        self.grants[key_arn].append(
            GrantInfo(grant_id, name, grantee, root_arn(issuer or self.account_id))
        )
        return grant_id

    # Reading the state, for tests.
    def policy(self, key_arn: str) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.policies[key_arn])
        return parsed

    def policy_grantees(self, key_arn: str) -> set[str]:
        """Who the key policy's Allow statements let in, but the owner: accounts, and the
        organizations and OU paths of aws:PrincipalOrgID / aws:PrincipalOrgPaths conditions."""
        found: set[str] = set()
        for statement in _as_list(self.policy(key_arn).get("Statement")):
            if statement.get("Effect") != "Allow":
                continue
            principal = statement.get("Principal")
            if isinstance(principal, dict):
                found |= {a for v in _as_list(principal.get("AWS")) if (a := _account_of(v))}
            for block in (statement.get("Condition") or {}).values():
                for name, values in block.items():
                    if name in ("aws:PrincipalOrgID", "aws:PrincipalOrgPaths"):
                        found |= set(_as_list(values))
        return found - {self.account_id}

    def grant_grantees(self, key_arn: str) -> set[str]:
        """Accounts holding a grant on the key, or having issued one."""
        return {
            account
            for grant in self.grants[key_arn]
            for arn in (grant.grantee_principal, grant.issuing_account or "")
            if (account := _account_of(arn)) and account != self.account_id
        }

    def launch_accounts(self, image_id: str) -> set[str]:
        return {p.value for p in self.launch[image_id]}

    # SourceAccount.
    async def describe_image(self, image_id: str) -> ImageInfo | None:
        await self._call("ec2:DescribeImages", image_id)
        return self.images.get(image_id)

    async def launch_permissions(self, image_id: str) -> list[Principal]:
        api = "ec2:DescribeImageAttribute"
        await self._call(api, image_id, error=self._no_image(api, image_id))
        return list(self.launch[image_id])

    async def snapshot_permissions(self, snapshot_id: str) -> set[str]:
        api = "ec2:DescribeSnapshotAttribute"
        await self._call(api, snapshot_id, error=self._no_snapshot(api, [snapshot_id]))
        return set(self.volume_permissions[snapshot_id])

    async def describe_snapshots(self, snapshot_ids: Sequence[str]) -> list[SnapshotInfo]:
        api = "ec2:DescribeSnapshots"
        await self._call(api, ",".join(snapshot_ids), error=self._no_snapshot(api, snapshot_ids))
        return [self.snapshots[s] for s in dict.fromkeys(snapshot_ids)]

    async def describe_key(self, key_id: str) -> KeyInfo:
        api = "kms:DescribeKey"
        await self._call(api, key_id, error=self._no_key(api, key_id))
        return self.keys[key_id]

    async def get_key_policy(self, key_arn: str) -> str:
        api = "kms:GetKeyPolicy"
        await self._call(api, key_arn, error=self._no_key(api, key_arn))
        return self.policies[key_arn]

    async def put_key_policy(self, key_arn: str, policy: str, principals: Sequence[str]) -> Change:
        api = "kms:PutKeyPolicy"
        json.loads(policy)  # AWS refuses a document that is not JSON; our code must never send one
        too_large = len(policy.encode()) > KEY_POLICY_MAX_BYTES
        error = self._no_key(api, key_arn) or (
            AwsCallError(api, "LimitExceededException", "The key policy is too large")
            if too_large
            else None
        )
        named = [p for p in principals if _named_in(p, policy)]
        request_id = await self._call(api, key_arn, principals, gives=named, error=error)
        self.policies[key_arn] = policy
        self.aws.landed(api)
        return Change(api, key_arn, tuple(principals), request_id)

    async def create_grant(
        self, key_arn: str, grantee_account_id: str, name: str
    ) -> tuple[str, Change]:
        api = "kms:CreateGrant"
        error = self._no_key(api, key_arn)
        grantee_only = (grantee_account_id,)
        request_id = await self._call(api, key_arn, grantee_only, gives=grantee_only, error=error)
        grantee = root_arn(grantee_account_id)
        same = [g for g in self.grants[key_arn] if (g.name, g.grantee_principal) == (name, grantee)]
        if same:  # the same name and grantee: AWS answers with the existing grant
            grant_id = same[0].grant_id
        else:
            grant_id = f"grant-{next(self.aws.ids):04d}"
            self.grants[key_arn].append(
                GrantInfo(grant_id, name, grantee, root_arn(self.account_id))
            )
        self.aws.landed(api)
        detail = {"grant_id": grant_id, "name": name, "operation": "create"}
        return grant_id, Change(api, key_arn, (grantee_account_id,), request_id, detail)

    async def list_grants(self, key_arn: str) -> list[GrantInfo]:
        api = "kms:ListGrants"
        await self._call(api, key_arn, error=self._no_key(api, key_arn))
        return list(self.grants[key_arn])

    async def revoke_grant(self, key_arn: str, grant_id: str) -> Change | None:
        api = "kms:RevokeGrant"
        error = self._no_key(api, key_arn)
        grantees = [
            g.grantee_principal for g in self.grants.get(key_arn, ()) if g.grant_id == grant_id
        ]
        whose = tuple(a for arn in grantees if (a := _account_of(arn)))
        request_id = await self._call(api, key_arn, whose, error=error)
        kept = [g for g in self.grants[key_arn] if g.grant_id != grant_id]
        if len(kept) == len(self.grants[key_arn]):
            return None  # already gone
        self.grants[key_arn] = kept
        self.aws.landed(api)
        return Change(api, key_arn, (), request_id, {"grant_id": grant_id, "operation": "revoke"})

    async def add_snapshot_permission(self, snapshot_id: str, account_ids: Sequence[str]) -> Change:
        return await self._snapshot_permission(snapshot_id, account_ids, "add")

    async def remove_snapshot_permission(
        self, snapshot_id: str, account_ids: Sequence[str]
    ) -> Change:
        return await self._snapshot_permission(snapshot_id, account_ids, "remove")

    async def add_launch_permission(self, image_id: str, principals: Sequence[Principal]) -> Change:
        return await self._launch_permission(image_id, principals, "add")

    async def remove_launch_permission(
        self, image_id: str, principals: Sequence[Principal]
    ) -> Change:
        return await self._launch_permission(image_id, principals, "remove")

    async def _snapshot_permission(
        self, snapshot_id: str, account_ids: Sequence[str], operation: str
    ) -> Change:
        if not 0 < len(account_ids) <= 500:  # as BotoSourceAccount: chunk first
            raise ValueError(f"{len(account_ids)} account IDs: give 1 to 500 per call")
        api = "ec2:ModifySnapshotAttribute"
        error = self._no_snapshot(api, [snapshot_id])
        gives = account_ids if operation == "add" else ()
        request_id = await self._call(api, snapshot_id, account_ids, gives=gives, error=error)
        holders = self.volume_permissions[snapshot_id]
        if operation == "add":
            holders |= set(account_ids)
        else:
            holders -= set(account_ids)
        self.aws.landed(api)
        return Change(api, snapshot_id, tuple(account_ids), request_id, {"operation": operation})

    async def _launch_permission(
        self, image_id: str, principals: Sequence[Principal], operation: str
    ) -> Change:
        if not principals:
            raise ValueError("no principals: nothing to change")
        if any(p.value.strip().lower() == "all" for p in principals):
            raise ValueError("refusing to share an image publicly (principal 'all')")
        api = "ec2:ModifyImageAttribute"
        values = tuple(p.value for p in principals)
        gives = values if operation == "add" else ()
        error = self._no_image(api, image_id)
        request_id = await self._call(api, image_id, values, gives=gives, error=error)
        current = self.launch[image_id]
        if operation == "add":
            current += [p for p in dict.fromkeys(principals) if p not in current]
        else:
            self.launch[image_id] = [p for p in current if p not in principals]
        self.aws.landed(api)
        return Change(api, image_id, values, request_id, {"operation": operation})

    async def _call(
        self,
        api: str,
        resource: str,
        principals: Sequence[str] = (),
        *,
        gives: Sequence[str] = (),
        error: AwsCallError | None = None,
    ) -> str:
        return await self.aws.call(
            self.account_id, api, resource, principals, gives=gives, error=error
        )

    # ImageCopier: copies into this account and Region, available at once.
    async def copy_image(self, request: CopyRequest) -> tuple[str, Change]:
        api = "ec2:CopyImage"
        source = self.aws.find_image(request.source_image_id)
        missing = AwsCallError(api, "InvalidAMIID.NotFound", request.source_image_id)
        request_id = await self._call(
            api, request.source_image_id, error=None if source else missing
        )
        assert source is not None
        if request.client_token not in self._copies:  # a repeated token: the same copy
            key_arn = request.kms_key_id or self.default_ebs_key()
            image_id = self.add_image(*[key_arn for _ in source.snapshot_ids])
            self.images[image_id] = replace(
                self.images[image_id], name=request.name, tags=dict(request.tags)
            )
            self._copies[request.client_token] = image_id
        image_id = self._copies[request.client_token]
        self.aws.landed(api)
        detail = {
            "source_image_id": request.source_image_id,
            "source_region": request.source_region,
            "kms_key_id": request.kms_key_id,
        }
        return image_id, Change(api, image_id, (self.account_id,), request_id, detail)

    async def own_image(self, image_id: str) -> ImageInfo | None:
        await self._call("ec2:DescribeImages", image_id)
        image = self.images.get(image_id)
        return image if image is not None and image.owner_id == self.account_id else None

    async def images_tagged(self, key: str, value: str) -> list[ImageInfo]:
        await self._call("ec2:DescribeImages", f"tag:{key}={value}")
        return [i for i in self.images.values() if getattr(i, "tags", {}).get(key) == value]

    async def deregister_image(self, image_id: str) -> Change | None:
        api = "ec2:DeregisterImage"
        request_id = await self._call(api, image_id)
        if self.images.pop(image_id, None) is None:
            return None
        self.aws.landed(api)
        return Change(api, image_id, (self.account_id,), request_id)

    async def describe_own_key(self, key_id: str) -> KeyInfo | None:
        await self._call("kms:DescribeKey", key_id)
        by_id = {arn.rsplit("/", 1)[1]: info for arn, info in self.keys.items()}
        return self.keys.get(key_id) or by_id.get(key_id)

    def default_ebs_key(self) -> str:
        """The account's AWS managed EBS key (alias/aws/ebs), made on first use."""
        if self._ebs_key is None:
            self._ebs_key = self.add_key(aws_managed=True)
        return self._ebs_key

    # What AWS answers for what this account does not have.
    def _no_image(self, api: str, image_id: str) -> AwsCallError | None:
        missing = image_id not in self.images
        return AwsCallError(api, "InvalidAMIID.NotFound", image_id) if missing else None

    def _no_snapshot(self, api: str, snapshot_ids: Sequence[str]) -> AwsCallError | None:
        missing = [s for s in snapshot_ids if s not in self.snapshots]
        return AwsCallError(api, "InvalidSnapshot.NotFound", missing[0]) if missing else None

    def _no_key(self, api: str, key_id: str) -> AwsCallError | None:
        missing = key_id not in self.keys
        return (
            AwsCallError(api, "NotFoundException", f"Key '{key_id}' does not exist")
            if missing
            else None
        )


class FakeDestination:
    """A destination account: it sees an image whose launch permission names it, and may use
    a key whose policy or grants name it; it copies images into itself as any account does."""

    def __init__(self, aws: FakeAws, account_id: str) -> None:
        self.aws = aws
        self.account_id = account_id
        self.own = aws.account(account_id)  # what it has of its own, as any account

    async def can_see_image(self, image_id: str) -> bool:
        await self.aws.call(self.account_id, "ec2:DescribeImages", image_id)
        return any(
            self.account_id in owner.launch_accounts(image_id)
            for owner in self.aws.accounts.values()
            if image_id in owner.images
        )

    async def can_use_key(self, key_arn: str) -> bool:
        await self.aws.call(self.account_id, "kms:DescribeKey", key_arn)
        return any(
            self.account_id in owner.policy_grantees(key_arn) | owner.grant_grantees(key_arn)
            for owner in self.aws.accounts.values()
            if key_arn in owner.keys
        )

    async def copy_image(self, request: CopyRequest) -> tuple[str, Change]:
        return await self.own.copy_image(request)

    async def own_image(self, image_id: str) -> ImageInfo | None:
        return await self.own.own_image(image_id)

    async def images_tagged(self, key: str, value: str) -> list[ImageInfo]:
        return await self.own.images_tagged(key, value)

    async def deregister_image(self, image_id: str) -> Change | None:
        return await self.own.deregister_image(image_id)

    async def describe_own_key(self, key_id: str) -> KeyInfo | None:
        return await self.own.describe_own_key(key_id)


# --------------------------------------------------------------------------- running jobs


def account(account_id: str) -> Principal:
    return Principal(account_id, PrincipalType.ACCOUNT)


def organization(org_id: str = "o-abcdefghij", management: str = "111111111111") -> Principal:
    arn = f"arn:aws:organizations::{management}:organization/{org_id}"
    return Principal(arn, PrincipalType.ORGANIZATION)


def fast_settings(**overrides: Any) -> Settings:
    """Settings whose waits are milliseconds: backoffs, verification."""
    values: dict[str, Any] = {
        "step_backoff_seconds": 0.001,
        "step_max_attempts": 4,
        "verify_initial_delay_seconds": 0.001,
        "verify_timeout_seconds": 0.02,
        "target_concurrency": 8,
    }
    return Settings(**(values | overrides))


class Worker:
    """Runs jobs as the worker does (Executor, then what the runner records at the end), on one
    FakeAws and one in-memory ledger."""

    def __init__(self, aws: FakeAws | None = None, settings: Settings | None = None) -> None:
        self.aws = aws or FakeAws()
        self.ledger = InMemoryLedger()
        self.locks = ProcessKeyLocks()
        self.settings = settings or fast_settings()
        self._job_ids = itertools.count(1)

    @property
    def source(self) -> FakeSourceAccount:
        return self.aws.account(SOURCE)

    def job(
        self,
        action: Action,
        image_id: str,
        targets: Sequence[Principal],
        *,
        kms_access: KmsAccess = KmsAccess.KEY_POLICY,
        share_snapshots: bool = True,
        verify: bool = False,
        repair: bool = False,
        prune: bool = False,
    ) -> InMemoryRecorder:
        spec = JobSpec(
            job_id=f"job-{next(self._job_ids):04d}",
            action=action,
            image_id=image_id,
            region=REGION,
            source_account_id=SOURCE,
            kms_access=kms_access,
            share_snapshots=share_snapshots,
            verify=verify,
            created_by="ci",
            repair=repair,
            prune=prune,
        )
        return InMemoryRecorder(spec, targets, self.ledger)

    async def run(self, job: InMemoryRecorder) -> InMemoryRecorder:
        executor = Executor(self.aws, self.locks, self.settings)
        job.status = JobStatus.RUNNING
        targets = {job.spec.region: list(job.targets)}
        job.finish(await executor.execute(job.spec, targets, job))
        return job

    async def share(
        self, image_id: str, targets: Sequence[Principal], **options: Any
    ) -> InMemoryRecorder:
        return await self.run(self.job(Action.SHARE, image_id, targets, **options))

    async def revoke(
        self, image_id: str, targets: Sequence[Principal], **options: Any
    ) -> InMemoryRecorder:
        return await self.run(self.job(Action.REVOKE, image_id, targets, **options))

    async def reconcile(
        self, image_id: str, targets: Sequence[Principal] = (), **options: Any
    ) -> InMemoryRecorder:
        return await self.run(self.job(Action.RECONCILE, image_id, targets, **options))
