"""Request dependencies: the database session (committed before the answer), the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.auth import Caller, TokenBook
from app.jobs.service import JobPolicy, JobService, SourceAccountLookup

_bearer = HTTPBearer(auto_error=False, description="A token from AMISHARE_API_TOKENS")


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    async with request.app.state.sessions() as session, session.begin():
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]


def require_scope(scope: str) -> Callable[..., Awaitable[Caller]]:
    async def authorize(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        book: TokenBook = request.app.state.tokens
        caller = book.identify(credentials.credentials) if credentials else None
        if caller is None:
            raise HTTPException(
                401,
                "Missing or unknown bearer token.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if scope not in caller.scopes:
            raise HTTPException(403, f"This token lacks the '{scope}' scope.")
        return caller

    return authorize


Reader = Annotated[Caller, Depends(require_scope("jobs:read"))]
Writer = Annotated[Caller, Depends(require_scope("jobs:write"))]


def _job_service(request: Request, session: SessionDep) -> JobService:
    policy: JobPolicy = request.app.state.job_policy
    own_account: SourceAccountLookup = request.app.state.own_account
    return JobService(session, policy, own_account, request.app.state.progress_cache)


JobServiceDep = Annotated[JobService, Depends(_job_service)]
