"""The database-backed JobRecorder: each record is one short transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.aws.gateway import Change
from app.db.engine import SessionFactory
from app.db.events import EventLog
from app.db.ledger import ShareLedger
from app.db.models import Job, JobEvent, Share
from app.db.targets import TargetLog
from app.domain.jobs import JobSpec, LedgerShare, ShareRecord
from app.domain.principals import Principal
from app.domain.types import KmsAccess, Step

log = logging.getLogger(__name__)


def _values(principals: Sequence[Principal]) -> list[str]:
    return [p.value for p in principals]


class SqlJobRecorder:
    def __init__(self, sessions: SessionFactory, spec: JobSpec, worker_id: str) -> None:
        self.sessions = sessions
        self.spec = spec
        self.worker_id = worker_id

    def _targets(self, session: AsyncSession) -> TargetLog:
        return TargetLog(session, self.spec.job_id, self.worker_id)

    async def start(self, principals: Sequence[Principal]) -> None:
        async with self.sessions.begin() as session:
            await self._targets(session).start(_values(principals))

    async def reach(self, principals: Sequence[Principal], step: Step) -> None:
        async with self.sessions.begin() as session:
            await self._targets(session).reach(_values(principals), step)

    async def fail(
        self, principals: Sequence[Principal], step: Step, code: str, message: str
    ) -> None:
        async with self.sessions.begin() as session:
            await self._targets(session).fail(_values(principals), step, code, message)

    async def succeed(self, principals: Sequence[Principal], step: Step) -> None:
        async with self.sessions.begin() as session:
            await self._targets(session).succeed(_values(principals), step)

    async def note(self, principals: Sequence[Principal], note: str) -> None:
        async with self.sessions.begin() as session:
            await self._targets(session).note(_values(principals), note)

    async def cancel(self, principals: Sequence[Principal], note: str) -> None:
        async with self.sessions.begin() as session:
            await self._targets(session).cancel(_values(principals), note)

    async def changed(self, *changes: Change) -> None:
        for change in changes:
            log.info(
                "aws change",
                extra={
                    "api": change.api,
                    "resource": change.resource,
                    "principals": len(change.principals),
                    "aws_request_id": change.request_id,
                },
            )
        await self._write_events(
            [
                self._event(c.api, c.resource, c.principals, c.request_id, outcome="ok")
                for c in changes
            ]
        )

    async def change_failed(
        self,
        api: str,
        resource: str,
        principals: Sequence[str],
        code: str,
        message: str,
        request_id: str | None,
    ) -> None:
        log.warning(
            "aws change refused",
            extra={"api": api, "resource": resource, "code": code, "aws_request_id": request_id},
        )
        await self._write_events(
            [self._event(api, resource, principals, request_id, outcome=code, message=message)]
        )

    def _event(
        self,
        api: str,
        resource: str,
        principals: Sequence[str],
        request_id: str | None,
        *,
        outcome: str,
        message: str | None = None,
    ) -> JobEvent:
        """One job_event row: the audit trail of one AWS change."""
        return JobEvent(
            job_id=self.spec.job_id,
            api=api,
            resource=resource,
            principals=list(principals),
            request_id=request_id,
            outcome=outcome,
            message=message[:2000] if message is not None else None,
        )

    async def _write_events(self, events: Sequence[JobEvent]) -> None:
        if not events:
            return
        async with self.sessions.begin() as session:
            await EventLog(session).add(events)

    async def record_shares(self, shares: Sequence[ShareRecord]) -> None:
        rows = [
            Share(
                image_id=self.spec.image_id,
                region=self.spec.region,
                principal=record.principal.value,
                principal_type=record.principal.type,
                source_account_id=self.spec.source_account_id,
                kms_access=self.spec.kms_access,
                kms_key_ids=list(record.kms_key_ids),
                snapshot_ids=list(record.snapshot_ids),
                grant_ids=dict(record.grant_ids),
                job_id=self.spec.job_id,
            )
            for record in shares
        ]
        async with self.sessions.begin() as session:
            await ShareLedger(session).record(rows)

    async def forget_shares(self, principals: Sequence[Principal]) -> None:
        async with self.sessions.begin() as session:
            await ShareLedger(session).forget(
                self.spec.image_id, self.spec.region, _values(principals)
            )

    async def ledger(self, principals: Sequence[Principal]) -> dict[Principal, LedgerShare]:
        by_value = {p.value: p for p in principals}
        async with self.sessions() as session:
            rows = await ShareLedger(session).of_principals(
                self.spec.image_id, self.spec.region, list(by_value)
            )
        return {
            by_value[row.principal]: LedgerShare(
                principal=by_value[row.principal],
                kms_access=KmsAccess(row.kms_access),
                kms_key_ids=tuple(row.kms_key_ids),
                snapshot_ids=tuple(row.snapshot_ids),
                grant_ids=dict(row.grant_ids),
            )
            for row in rows
        }

    async def key_users_elsewhere(
        self, key_arn: str, principals: Sequence[Principal]
    ) -> set[tuple[str, KmsAccess]]:
        async with self.sessions() as session:
            users = await ShareLedger(session).key_users_elsewhere(
                self.spec.image_id, self.spec.region, key_arn, _values(principals), self.spec.job_id
            )
        return {(principal, KmsAccess(access)) for principal, access in users}

    async def cancel_requested(self) -> bool:
        async with self.sessions() as session:
            query = select(col(Job.cancel_requested)).where(col(Job.id) == self.spec.job_id)
            return bool((await session.execute(query)).scalar_one())
