"""Entering the accounts a job acts in, as the job's role session: the source, and destinations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from app.aws.call_errors import AwsCallError
from app.aws.gateway import AwsGateway, DestinationAccount, RoleSession, SourceAccount
from app.domain.job_spec import JobSpec
from app.domain.retry import RetryPolicy
from app.worker.failures import source_failure


@asynccontextmanager
async def source_account(
    gateway: AwsGateway, spec: JobSpec, retry: RetryPolicy
) -> AsyncIterator[SourceAccount]:
    """The source account as the job's role session. Assuming the role is retried like any
    call; a role that cannot be assumed fails the job (SourceRoleUnavailable), once."""
    session = RoleSession(spec.job_id, spec.created_by or None)
    attempt = 0
    async with AsyncExitStack() as stack:
        while True:
            try:
                source = await stack.enter_async_context(
                    gateway.source(spec.source_account_id, spec.region, session)
                )
                break
            except AwsCallError as error:
                attempt += 1
                if not error.retryable or attempt >= retry.max_attempts:
                    raise source_failure(error) from error
                await asyncio.sleep(retry.delay(attempt))
        yield source


@asynccontextmanager
async def destination_account(
    gateway: AwsGateway, account_id: str, spec: JobSpec, retry: RetryPolicy
) -> AsyncIterator[DestinationAccount]:
    """A destination through its role, assumed as the job's session; a throttled or failing
    AssumeRole is retried within the step's budget, then its error is raised."""
    session = RoleSession(spec.job_id, spec.created_by or None)
    attempt = 0
    async with AsyncExitStack() as stack:
        while True:
            try:
                destination = await stack.enter_async_context(
                    gateway.destination(account_id, spec.region, session)
                )
                break
            except AwsCallError as error:
                attempt += 1
                if not error.retryable or attempt >= retry.max_attempts:
                    raise
                await asyncio.sleep(retry.delay(attempt))
        yield destination
