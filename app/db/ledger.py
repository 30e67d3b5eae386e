"""The ledger: what is shared right now (`share`) and every way in to a key it gave
(`key_access`), kept by share and revoke jobs as each change lands."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Job, JobTarget, KeyAccessRow, Share
from app.db.types import utcnow
from app.domain.access import KeyAccess, ShareRecord, ShareUpdate
from app.domain.principals import Principal, principal_of
from app.domain.types import Action, JobStatus, KmsAccess, TargetStatus


@dataclass(frozen=True, slots=True)
class ShareFilter:
    image_id: str | None = None
    region: str | None = None
    principal: str | None = None


def _union(old: Sequence[str], new: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*old, *new]))


def share_record(row: Share) -> ShareRecord:
    return ShareRecord(
        principal=principal_of(row.principal, row.principal_type),
        launch_permission=row.launch_permission,
        snapshot_ids=tuple(row.snapshot_ids),
        kms_key_ids=tuple(row.kms_key_ids),
        job_id=row.job_id,
        kms_access=KmsAccess(row.kms_access),
        copied_image_id=row.copied_image_id,
        copy_kms_key_id=row.copy_kms_key_id,
    )


def key_access_of(row: KeyAccessRow) -> KeyAccess:
    return KeyAccess(
        key_arn=row.key_arn,
        principal=principal_of(row.principal, row.principal_type),
        key_policy=row.key_policy,
        grant_ids=tuple(row.grant_ids),
    )


@dataclass(frozen=True, slots=True)
class ShareScope:
    """The rows one job keeps: one image in one region of one source account."""

    image_id: str
    region: str
    source_account_id: str
    job_id: str
    kms_access: str
    source_image_id: str | None = None  # when `image_id` is a copy the service made


class ShareLedger:
    """Rows of one image change only under the job that holds that image (jobs on one image
    run one at a time), so a read-modify-write here races with no one."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_principals(
        self, image_id: str, region: str, principals: Sequence[str]
    ) -> Sequence[Share]:
        query = select(Share).where(
            col(Share.image_id) == image_id,
            col(Share.region) == region,
            col(Share.principal).in_(principals),
        )
        return (await self.session.execute(query)).scalars().all()

    async def principals(self, image_id: str, region: str) -> list[tuple[str, str]]:
        """(principal, type) of every row of the image in the region, oldest first."""
        query = (
            select(col(Share.principal), col(Share.principal_type))
            .where(col(Share.image_id) == image_id, col(Share.region) == region)
            .order_by(col(Share.shared_at), col(Share.principal))
        )
        return [(p, t) for p, t in (await self.session.execute(query)).all()]

    async def organizations(self, image_id: str, region: str) -> list[str]:
        """Organizations and OUs the image is shared with (launch permission)."""
        query = select(col(Share.principal)).where(
            col(Share.image_id) == image_id,
            col(Share.region) == region,
            col(Share.principal_type) != "account",
            col(Share.launch_permission),
        )
        return list((await self.session.execute(query)).scalars().all())

    async def merge(self, scope: ShareScope, updates: Sequence[ShareUpdate]) -> None:
        """Add what `updates` gave to each principal's row (created if missing). A row whose
        launch permission is given anew becomes this job's."""
        if not updates:
            return
        now = utcnow()
        existing = {
            row.principal: row
            for row in await self.of_principals(
                scope.image_id, scope.region, [u.principal.value for u in updates]
            )
        }
        new_rows: list[dict[str, object]] = []
        changed: list[dict[str, object]] = []
        for item in updates:
            row = existing.get(item.principal.value)
            if row is None:
                new_rows.append(
                    {
                        "image_id": scope.image_id,
                        "region": scope.region,
                        "principal": item.principal.value,
                        "principal_type": item.principal.type.value,
                        "source_account_id": scope.source_account_id,
                        "kms_access": scope.kms_access,
                        "kms_key_ids": list(item.kms_key_ids),
                        "snapshot_ids": list(item.snapshot_ids),
                        "launch_permission": bool(item.launch_permission),
                        "source_image_id": scope.source_image_id,
                        "copied_image_id": item.copied_image_id,
                        "copy_kms_key_id": item.copy_kms_key_id,
                        "job_id": scope.job_id,
                        "shared_at": now,
                        "updated_at": now,
                    }
                )
                continue
            launch = (
                row.launch_permission if item.launch_permission is None else item.launch_permission
            )
            changed.append(
                {
                    "id": row.id,
                    "kms_key_ids": _union(row.kms_key_ids, item.kms_key_ids),
                    "snapshot_ids": _union(row.snapshot_ids, item.snapshot_ids),
                    "launch_permission": launch,
                    "copied_image_id": item.copied_image_id or row.copied_image_id,
                    "copy_kms_key_id": (
                        item.copy_kms_key_id if item.copied_image_id else row.copy_kms_key_id
                    ),
                    "job_id": scope.job_id if launch and not row.launch_permission else row.job_id,
                    "updated_at": now,
                }
            )
        if new_rows:
            await self.session.execute(insert(Share), new_rows)
        if changed:
            await self.session.execute(update(Share), changed)

    async def mark_shared(self, scope: ShareScope, principals: Sequence[str]) -> None:
        """The share of these principals is complete: their rows are this job's now."""
        if not principals:
            return
        now = utcnow()
        await self.session.execute(
            update(Share)
            .where(
                col(Share.image_id) == scope.image_id,
                col(Share.region) == scope.region,
                col(Share.principal).in_(principals),
            )
            .values(
                launch_permission=True,
                job_id=scope.job_id,
                kms_access=scope.kms_access,
                shared_at=now,
                updated_at=now,
            )
        )

    async def settle(self, scope: ShareScope, remaining: Sequence[ShareRecord]) -> None:
        """After taking access back: each row says exactly what remains (inserted if the
        ledger had not recorded it: found on AWS by name, or left by a failed undo)."""
        if not remaining:
            return
        now = utcnow()
        rows = {
            row.principal: row
            for row in await self.of_principals(
                scope.image_id, scope.region, [r.principal.value for r in remaining]
            )
        }
        changed = [
            {
                "id": rows[r.principal.value].id,
                "launch_permission": r.launch_permission,
                "snapshot_ids": list(r.snapshot_ids),
                "kms_key_ids": list(r.kms_key_ids),
                "updated_at": now,
            }
            for r in remaining
            if r.principal.value in rows
        ]
        if changed:
            await self.session.execute(update(Share), changed)
        await self.merge(
            scope,
            [
                ShareUpdate(r.principal, r.launch_permission, r.snapshot_ids, r.kms_key_ids)
                for r in remaining
                if r.principal.value not in rows
            ],
        )

    async def forget(self, image_id: str, region: str, principals: Sequence[str]) -> None:
        if not principals:
            return
        await self.session.execute(
            delete(Share).where(
                col(Share.image_id) == image_id,
                col(Share.region) == region,
                col(Share.principal).in_(principals),
            )
        )

    async def page(
        self, filters: ShareFilter, limit: int, after: tuple[str, str, str] | None
    ) -> Sequence[Share]:
        """Ordered by (image, region, principal); `after` continues a previous page."""
        order = (col(Share.image_id), col(Share.region), col(Share.principal))
        query = select(Share).order_by(*order).limit(limit)
        if after is not None:
            query = query.where(tuple_(*order) > tuple_(*after))
        if filters.image_id:  # the image itself, or a copy of it the service made
            query = query.where(
                or_(
                    col(Share.image_id) == filters.image_id,
                    col(Share.source_image_id) == filters.image_id,
                )
            )
        if filters.region:
            query = query.where(col(Share.region) == filters.region)
        if filters.principal:
            query = query.where(col(Share.principal) == filters.principal)
        return (await self.session.execute(query)).scalars().all()


class KeyAccessLedger:
    """Rows of one key change only under that key's lock (app/db/key_locks.py)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_keys(
        self, key_arns: Sequence[str], principals: Sequence[str]
    ) -> Sequence[KeyAccessRow]:
        if not key_arns or not principals:
            return []
        query = select(KeyAccessRow).where(
            col(KeyAccessRow.key_arn).in_(key_arns), col(KeyAccessRow.principal).in_(principals)
        )
        return (await self.session.execute(query)).scalars().all()

    async def add(
        self,
        region: str,
        source_account_id: str,
        key_arn: str,
        principals: Sequence[Principal],
        *,
        key_policy: bool = False,
        grant_ids: Mapping[Principal, str] | None = None,
    ) -> None:
        """Record ways in, merged with what is recorded: a statement, grant IDs added."""
        grant_ids = grant_ids or {}
        if not principals:
            return
        now = utcnow()
        existing = {
            row.principal: row
            for row in await self.of_keys([key_arn], [p.value for p in principals])
        }
        new_rows: list[dict[str, object]] = []
        changed: list[dict[str, object]] = []
        for principal in principals:
            grant = [grant_ids[principal]] if principal in grant_ids else []
            row = existing.get(principal.value)
            if row is None:
                new_rows.append(
                    {
                        "region": region,
                        "key_arn": key_arn,
                        "principal": principal.value,
                        "principal_type": principal.type.value,
                        "source_account_id": source_account_id,
                        "key_policy": key_policy,
                        "grant_ids": grant,
                        "updated_at": now,
                    }
                )
            else:
                changed.append(
                    {
                        "id": row.id,
                        "key_policy": row.key_policy or key_policy,
                        "grant_ids": _union(row.grant_ids, grant),
                        "updated_at": now,
                    }
                )
        if new_rows:
            await self.session.execute(insert(KeyAccessRow), new_rows)
        if changed:
            await self.session.execute(update(KeyAccessRow), changed)

    async def forget(self, key_arn: str, principals: Sequence[str]) -> None:
        if not principals:
            return
        await self.session.execute(
            delete(KeyAccessRow).where(
                col(KeyAccessRow.key_arn) == key_arn, col(KeyAccessRow.principal).in_(principals)
            )
        )

    async def needed_elsewhere(
        self, region: str, key_arn: str, principals: Sequence[str], image_id: str, job_id: str
    ) -> dict[str, list[str]]:
        """Principals that still need `key_arn` for something other than `image_id`, and what
        needs it: an active share of another image, or a share job on another image not yet
        finished (it may be about to need the key; keeping access is the safe side)."""
        needed: dict[str, list[str]] = {}
        shares = select(col(Share.principal), col(Share.image_id), col(Share.kms_key_ids)).where(
            col(Share.region) == region,
            col(Share.image_id) != image_id,
            col(Share.principal).in_(principals),
            col(Share.launch_permission),
        )
        for principal, other_image, key_ids in (await self.session.execute(shares)).all():
            if key_arn in key_ids:
                needed.setdefault(principal, []).append(other_image)
        pending = (
            select(col(JobTarget.principal), col(Job.id))
            .join(Job, col(Job.id) == col(JobTarget.job_id))
            .where(
                col(Job.action) == Action.SHARE,
                col(Job.status).in_([JobStatus.QUEUED, JobStatus.RUNNING]),
                col(Job.id) != job_id,
                col(Job.image_id) != image_id,
                col(Job.region) == region,
                col(JobTarget.principal).in_(principals),
                col(JobTarget.status).in_([TargetStatus.PENDING, TargetStatus.RUNNING]),
            )
        )
        for principal, other_job in (await self.session.execute(pending)).all():
            needed.setdefault(principal, []).append(other_job)
        return {p: sorted(set(by)) for p, by in needed.items()}
