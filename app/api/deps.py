"""Request dependencies: the database session (committed before the answer), the caller,
the job status cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.auth import Caller
from app.api.authenticate import CHALLENGE, UNAUTHENTICATED, caller_of
from app.service.jobs import JobPolicy, JobService, SourceAccountLookup
from app.service.status_cache import StatusCache


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    async with request.app.state.sessions() as session, session.begin():
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
            raise HTTPException(403, f"This token lacks the '{self.scope}' scope.")
        return caller


Reader = Annotated[Caller, Depends(ScopedBearer("jobs:read"))]
Writer = Annotated[Caller, Depends(ScopedBearer("jobs:write"))]


async def _job_service(request: Request, session: SessionDep) -> JobService:
    policy: JobPolicy = request.app.state.job_policy
    own_account: SourceAccountLookup = request.app.state.own_account
    return JobService(session, policy, own_account, request.app.state.progress_cache)


JobServiceDep = Annotated[JobService, Depends(_job_service)]


@asynccontextmanager
async def job_service(request: Request) -> AsyncIterator[JobService]:
    """A JobService in its own transaction, for a route that needs the database only
    sometimes (a dependency would open the transaction for every request)."""
    async with request.app.state.sessions() as session, session.begin():
        yield await _job_service(request, session)


async def status_cache(request: Request) -> StatusCache:
    cache: StatusCache = request.app.state.status_cache
    return cache


StatusCacheDep = Annotated[StatusCache, Depends(status_cache)]
