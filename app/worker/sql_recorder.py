"""The database-backed JobRecorder: each record is one short transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.aws.gateway import Change
from app.db.engine import SessionFactory
from app.db.events import EventLog
from app.db.image_copies import ImageCopies
from app.db.job_keys import JobKeys
from app.db.job_targets import JobTargets
from app.db.ledger import KeyAccessLedger, ShareLedger, ShareScope, key_access_of, share_record
from app.db.models import Job, JobEvent
from app.db.queue import JobQueue
from app.domain.access import KeyAccess, ShareRecord, ShareUpdate
from app.domain.copies import SourceCopy
from app.domain.job_spec import JobSpec
from app.domain.principals import Principal, principal_of
from app.domain.types import Step

log = logging.getLogger(__name__)


def _values(principals: Sequence[Principal]) -> list[str]:
    return [p.value for p in principals]


class SqlJobRecorder:
    def __init__(self, sessions: SessionFactory, spec: JobSpec, worker_id: str) -> None:
        self.sessions = sessions
        self.spec = spec
        self.worker_id = worker_id

    def in_region(self, spec: JobSpec) -> SqlJobRecorder:
        return SqlJobRecorder(self.sessions, spec, self.worker_id)

    def _targets(self, session: AsyncSession) -> JobTargets:
        return JobTargets(session, self.spec.job_id, self.worker_id, self.spec.region)

    async def fail_unfinished(self, code: str, message: str) -> None:
        async with self.sessions.begin() as session:
            await self._targets(session).fail_unfinished(code, message)

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
                self._event(
                    c.api, c.resource, c.principals, c.request_id, outcome="ok", detail=c.detail
                )
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
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        log.warning(
            "aws change refused",
            extra={"api": api, "resource": resource, "code": code, "aws_request_id": request_id},
        )
        await self._write_events(
            [
                self._event(
                    api,
                    resource,
                    principals,
                    request_id,
                    outcome=code,
                    message=message,
                    detail=detail,
                )
            ]
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
        detail: Mapping[str, Any] | None = None,
    ) -> JobEvent:
        """One job_event row: the audit trail of one AWS change, with what exactly changed."""
        return JobEvent(
            job_id=self.spec.job_id,
            api=api,
            resource=resource,
            principals=list(principals),
            request_id=request_id,
            outcome=outcome,
            message=message[:2000] if message is not None else None,
            detail=dict(detail) if detail else None,
        )

    async def _write_events(self, events: Sequence[JobEvent]) -> None:
        if not events:
            return
        async with self.sessions.begin() as session:
            await EventLog(session).add(events)

    def _scope(self) -> ShareScope:
        spec = self.spec
        return ShareScope(
            spec.image_id,
            spec.region,
            spec.source_account_id,
            spec.job_id,
            spec.kms_access,
            spec.source_image_id,
        )

    async def ledger_of(self, image_id: str, source_image_id: str | None) -> None:
        self.spec = replace(self.spec, image_id=image_id, source_image_id=source_image_id)

    async def sharing(self, image_id: str, source_image_id: str | None) -> None:
        await self.ledger_of(image_id, source_image_id)
        async with self.sessions.begin() as session:
            await self._targets(session).record_image(image_id)
            if self.spec.source_region is None:  # the job's own Region: the job says so too
                queue = JobQueue(session, skip_locked=False)
                await queue.record_shared_image(self.spec.job_id, self.worker_id, image_id)

    async def record_keys(self, key_arns: Sequence[str]) -> None:
        async with self.sessions.begin() as session:
            await JobKeys(session).add(self.spec.job_id, key_arns)

    async def source_copy(
        self, source_image_id: str, source_region: str, region: str, kms_key_id: str
    ) -> SourceCopy | None:
        async with self.sessions() as session:
            return await ImageCopies(session).find(
                source_image_id, source_region, region, kms_key_id
            )

    async def record_source_copy(self, copy: SourceCopy) -> None:
        async with self.sessions.begin() as session:
            await ImageCopies(session).save(copy, self.spec.source_account_id)

    async def source_copies_of(self, image_id: str, region: str) -> list[str]:
        async with self.sessions() as session:
            return await ImageCopies(session).copies_of(image_id, region)

    async def copies(self, principals: Sequence[Principal]) -> dict[Principal, str]:
        by_value = {p.value: p for p in principals}
        async with self.sessions() as session:
            found = await self._targets(session).copied(list(by_value))
        return {by_value[p]: image_id for p, image_id in found.items()}

    async def record_copy(self, principal: Principal, image_id: str) -> None:
        async with self.sessions.begin() as session:
            await self._targets(session).record_copy(principal.value, image_id)

    async def shares(self, principals: Sequence[Principal]) -> dict[Principal, ShareRecord]:
        by_value = {p.value: p for p in principals}
        async with self.sessions() as session:
            rows = await ShareLedger(session).of_principals(
                self.spec.image_id, self.spec.region, list(by_value)
            )
        return {by_value[row.principal]: share_record(row) for row in rows}

    async def shared_principals(self) -> list[Principal]:
        async with self.sessions() as session:
            rows = await ShareLedger(session).principals(self.spec.image_id, self.spec.region)
        return [principal_of(value, kind) for value, kind in rows]

    async def add_targets(self, principals: Sequence[Principal]) -> None:
        async with self.sessions.begin() as session:
            await self._targets(session).add(
                [(p.value, p.type.value) for p in principals], self.spec.image_id
            )

    async def record_drift(self, principal: Principal, drift: Mapping[str, Any] | None) -> None:
        async with self.sessions.begin() as session:
            await self._targets(session).record_drift(
                principal.value, dict(drift) if drift is not None else None
            )

    async def organization_shares(self) -> list[str]:
        async with self.sessions() as session:
            return await ShareLedger(session).organizations(self.spec.image_id, self.spec.region)

    async def record_shares(self, updates: Sequence[ShareUpdate]) -> None:
        if not updates:
            return
        async with self.sessions.begin() as session:
            await ShareLedger(session).merge(self._scope(), updates)

    async def complete_shares(self, principals: Sequence[Principal]) -> None:
        async with self.sessions.begin() as session:
            await ShareLedger(session).mark_shared(self._scope(), _values(principals))

    async def settle_shares(
        self, remaining: Sequence[ShareRecord], gone: Sequence[Principal]
    ) -> None:
        async with self.sessions.begin() as session:
            ledger = ShareLedger(session)
            await ledger.forget(self.spec.image_id, self.spec.region, _values(gone))
            await ledger.settle(self._scope(), remaining)

    async def key_access(
        self, key_arn: str, principals: Sequence[Principal]
    ) -> dict[Principal, KeyAccess]:
        by_value = {p.value: p for p in principals}
        async with self.sessions() as session:
            rows = await KeyAccessLedger(session).of_keys([key_arn], list(by_value))
        return {by_value[row.principal]: key_access_of(row) for row in rows}

    async def record_key_access(
        self,
        key_arn: str,
        principals: Sequence[Principal],
        *,
        key_policy: bool = False,
        grant_ids: Mapping[Principal, str] | None = None,
    ) -> None:
        if not principals:
            return
        async with self.sessions.begin() as session:
            await KeyAccessLedger(session).add(
                self.spec.region,
                self.spec.source_account_id,
                key_arn,
                principals,
                key_policy=key_policy,
                grant_ids=grant_ids,
            )

    async def forget_key_access(self, key_arn: str, principals: Sequence[Principal]) -> None:
        if not principals:
            return
        async with self.sessions.begin() as session:
            await KeyAccessLedger(session).forget(key_arn, _values(principals))

    async def key_needed_elsewhere(
        self, key_arn: str, principals: Sequence[Principal]
    ) -> dict[Principal, list[str]]:
        by_value = {p.value: p for p in principals}
        async with self.sessions() as session:
            needed = await KeyAccessLedger(session).needed_elsewhere(
                self.spec.region, key_arn, list(by_value), self.spec.image_id, self.spec.job_id
            )
        return {by_value[principal]: by for principal, by in needed.items()}

    async def cancel_requested(self) -> bool:
        async with self.sessions() as session:
            query = select(col(Job.cancel_requested)).where(col(Job.id) == self.spec.job_id)
            return bool((await session.execute(query)).scalar_one())
