"""What the executor records as it goes; the worker gives it a database-backed one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from app.aws.gateway import Change
from app.domain.jobs import LedgerShare, ShareRecord
from app.domain.principals import Principal
from app.domain.types import KmsAccess, Step


class JobRecorder(Protocol):
    async def start(self, principals: Sequence[Principal]) -> None: ...

    async def reach(self, principals: Sequence[Principal], step: Step) -> None: ...

    async def fail(
        self, principals: Sequence[Principal], step: Step, code: str, message: str
    ) -> None: ...

    async def succeed(self, principals: Sequence[Principal], step: Step) -> None: ...

    async def note(self, principals: Sequence[Principal], note: str) -> None: ...

    async def cancel(self, principals: Sequence[Principal], note: str) -> None: ...

    async def changed(self, *changes: Change) -> None:
        """AWS modifications succeeded: the audit trail gets them (one write for all)."""
        ...

    async def change_failed(
        self,
        api: str,
        resource: str,
        principals: Sequence[str],
        code: str,
        message: str,
        request_id: str | None,
    ) -> None: ...

    async def record_shares(self, shares: Sequence[ShareRecord]) -> None: ...

    async def forget_shares(self, principals: Sequence[Principal]) -> None: ...

    async def ledger(self, principals: Sequence[Principal]) -> dict[Principal, LedgerShare]:
        """The active shares of this job's image to these principals."""
        ...

    async def key_users_elsewhere(
        self, key_arn: str, principals: Sequence[Principal]
    ) -> set[tuple[str, KmsAccess]]:
        """Which of these principals still need the key, and how, for anything but this image."""
        ...

    async def cancel_requested(self) -> bool: ...
