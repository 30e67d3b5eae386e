"""Credentials of assumed roles, and which one the current task acts as."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from botocore.credentials import ReadOnlyCredentials


@dataclass(frozen=True, slots=True)
class Credentials:
    """Temporary credentials of an assumed role; the secrets never appear in a repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime | None = None

    def client_kwargs(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }


# Assume again this long before the credentials expire: a request signed just before the end
# may reach AWS after it.
REFRESH_MARGIN = timedelta(minutes=5)


class RoleCredentials:
    """The credentials of one assumed role: assumed again shortly before they expire, and at
    once when AWS has answered that they have (clocks differ; sessions can be revoked)."""

    def __init__(self, assume: Callable[[], Awaitable[Credentials]], first: Credentials) -> None:
        self._assume = assume
        self._current = first
        self._stale = False
        self._lock = asyncio.Lock()

    def mark_stale(self) -> None:
        self._stale = True

    def _due(self) -> bool:
        expiration = self._current.expiration
        return self._stale or (
            expiration is not None and expiration - REFRESH_MARGIN <= datetime.now(UTC)
        )

    async def frozen(self) -> ReadOnlyCredentials:
        if self._due():
            async with self._lock:
                if self._due():  # another task may have assumed it again meanwhile
                    self._current = await self._assume()
                    self._stale = False
        current = self._current
        return ReadOnlyCredentials(
            current.access_key_id, current.secret_access_key, current.session_token
        )


_acting_as: ContextVar[RoleCredentials | None] = ContextVar("amishare_role", default=None)


def mark_credentials_stale() -> None:
    """AWS said the current task's role credentials expired: the next call assumes again."""
    role = _acting_as.get()
    if role is not None:
        role.mark_stale()


def current_role() -> RoleCredentials | None:
    return _acting_as.get()


@contextmanager
def acting_as(role: RoleCredentials) -> Iterator[None]:
    """Within this block, in this task (and the tasks it starts), the shared clients sign as
    `role`."""
    token = _acting_as.set(role)
    try:
        yield
    finally:
        _acting_as.reset(token)
