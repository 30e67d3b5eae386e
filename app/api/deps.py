"""Request dependencies: the Runtime, the database session (committed before the answer), the
caller, the job service and the job status cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.auth import Caller
from app.api.authenticate import CHALLENGE, UNAUTHENTICATED, caller_of, lacks_scope
from app.api.etags import IfNoneMatch, if_none_match_of
from app.runtime import Runtime, runtime_of
from app.service.jobs import JobService
from app.service.status_cache import StatusCache


async def _runtime(request: Request) -> Runtime:
    return runtime_of(request.app.state)


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


async def _session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    async with runtime.sessions() as session, session.begin():
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]


class ScopedBearer(HTTPBearer):
    """The caller, checked for one scope. The token was identified before the body was read,
    by the Authenticate middleware; OpenAPI sees the same `HTTPBearer` scheme."""

    def __init__(self, scope: str) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="HTTPBearer",
            description="A token from AMISHARE_API_TOKENS",
        )
        self.scope = scope

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        caller = caller_of(request.scope)
        if caller is None:  # a route outside /v1, where Authenticate does not run
            raise HTTPException(401, UNAUTHENTICATED, headers=CHALLENGE)
        if self.scope not in caller.scopes:
            raise HTTPException(403, lacks_scope(self.scope))
        return caller


Reader = Annotated[Caller, Depends(ScopedBearer("jobs:read"))]
Writer = Annotated[Caller, Depends(ScopedBearer("jobs:write"))]


async def _job_service(runtime: RuntimeDep, session: SessionDep) -> JobService:
    return JobService(session, runtime.settings, runtime.own_account)


JobServiceDep = Annotated[JobService, Depends(_job_service)]


@asynccontextmanager
async def job_service(runtime: Runtime) -> AsyncIterator[JobService]:
    """A JobService in its own transaction, for a route that needs the database only
    sometimes (a dependency would open the transaction for every request)."""
    async with runtime.sessions() as session, session.begin():
        yield JobService(session, runtime.settings, runtime.own_account)


async def _status_cache(runtime: RuntimeDep) -> StatusCache:
    return runtime.status_cache


StatusCacheDep = Annotated[StatusCache, Depends(_status_cache)]


@dataclass(frozen=True, slots=True)
class Poll:
    """What the polled route needs, in one dependency: each dependency FastAPI resolves costs
    about a tenth of that route's time (docs/performance.md)."""

    runtime: Runtime
    if_none_match: IfNoneMatch


async def _poll(request: Request) -> Poll:
    return Poll(runtime_of(request.app.state), if_none_match_of(request))


PollDep = Annotated[Poll, Depends(_poll)]
