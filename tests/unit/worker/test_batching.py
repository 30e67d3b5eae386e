"""Batched changes: one call for many principals, and when AWS refuses the batch for a bad
principal, halving until the bad ones stand alone; any other error is not about one principal."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from app.aws.call_errors import AwsCallError
from app.worker.batching import apply_isolating_rejects, chunked


def test_chunked_cuts_in_order_with_a_shorter_last_chunk() -> None:
    items = list(range(1001))

    chunks = chunked(items, 500)

    assert [len(c) for c in chunks] == [500, 500, 1]
    assert [i for c in chunks for i in c] == items
    assert chunked(items[:500], 500) == [items[:500]]
    assert chunked([], 500) == []


class Aws:
    """Applies batches; refuses, as a whole, any batch naming a bad principal."""

    def __init__(self, bad: set[int], error: str = "InvalidAMIAttributeItemValue") -> None:
        self.bad = bad
        self.error = error
        self.calls: list[list[int]] = []
        self.applied: list[int] = []

    async def apply(self, batch: Sequence[int]) -> None:
        self.calls.append(list(batch))
        named = sorted(self.bad.intersection(batch))
        if named:
            raise AwsCallError("ec2:ModifyImageAttribute", self.error, f"bad {named[0]}")
        self.applied += batch


async def test_a_batch_without_bad_principals_is_one_call() -> None:
    aws = Aws(bad=set())

    rejected = await apply_isolating_rejects(list(range(500)), aws.apply)

    assert rejected == {}
    assert aws.calls == [list(range(500))]


@pytest.mark.parametrize("bad", [{0}, {499}, {7, 300}, {1, 2, 3}])
async def test_every_bad_principal_is_found_in_few_calls_and_every_good_one_applied_once(
    bad: set[int],
) -> None:
    items = list(range(500))
    aws = Aws(bad)

    rejected = await apply_isolating_rejects(items, aws.apply)

    assert set(rejected) == bad
    assert all(e.code == "InvalidAMIAttributeItemValue" for e in rejected.values())
    assert sorted(aws.applied) == sorted(set(items) - bad)
    # Each bad principal costs at most two calls per halving, the first call aside.
    assert len(aws.calls) <= 1 + 2 * len(bad) * math.ceil(math.log2(len(items)))


async def test_every_principal_bad_is_every_principal_rejected() -> None:
    aws = Aws(bad=set(range(8)))

    rejected = await apply_isolating_rejects(list(range(8)), aws.apply)

    assert sorted(rejected) == list(range(8))
    assert aws.applied == []


@pytest.mark.parametrize(
    "code", ["RequestLimitExceeded", "InternalError", "AccessDenied", "OperationNotPermitted"]
)
async def test_an_error_not_about_a_principal_is_raised_at_once(code: str) -> None:
    aws = Aws(bad={3}, error=code)

    with pytest.raises(AwsCallError) as raised:
        await apply_isolating_rejects(list(range(8)), aws.apply)

    assert raised.value.code == code
    assert len(aws.calls) == 1  # no halving: the batch was not refused for a principal


async def test_nothing_to_apply_makes_no_call() -> None:
    aws = Aws(bad=set())

    assert await apply_isolating_rejects([], aws.apply) == {}
    assert aws.calls == []
