"""Bounded retries of throttled and transient AWS calls, with full jitter."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from app.aws.call_errors import AwsCallError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


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
