"""Batched source-side changes that find the one bad principal instead of failing them all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from app.aws.call_errors import AwsCallError, ErrorKind

T = TypeVar("T")


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def apply_isolating_rejects(
    items: Sequence[T], apply: Callable[[Sequence[T]], Awaitable[None]]
) -> dict[T, AwsCallError]:
    """Apply `items` in one call; when AWS rejects the batch for a bad principal, split it in
    halves until the bad ones stand alone. Returns the rejected items and why.

    Any other error is raised: it is not about one principal.
    """
    if not items:
        return {}
    try:
        await apply(items)
        return {}
    except AwsCallError as error:
        if error.kind is not ErrorKind.INVALID_PRINCIPAL:
            raise
        if len(items) == 1:
            return {items[0]: error}
    middle = len(items) // 2
    rejected = await apply_isolating_rejects(items[:middle], apply)
    rejected.update(await apply_isolating_rejects(items[middle:], apply))
    return rejected
