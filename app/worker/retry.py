"""Bounded retries of throttled and transient AWS calls, with full jitter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.aws.call_errors import AwsCallError
from app.domain.retry import RetryPolicy

T = TypeVar("T")


async def with_retries(policy: RetryPolicy, call: Callable[[], Awaitable[T]]) -> T:
    """Run `call`; on a retryable AwsCallError wait and run it again, at most max_attempts."""
    attempt = 0
    while True:
        try:
            return await call()
        except AwsCallError as error:
            attempt += 1
            if not error.retryable or attempt >= policy.max_attempts:
                raise
            await asyncio.sleep(policy.delay(attempt))
