"""with_retries: throttled, 5xx and expired-credential errors are retried, a bounded number of
times; anything else is raised at once."""

from __future__ import annotations

import pytest

from app.aws.call_errors import AwsCallError
from app.domain.retry import RetryPolicy
from app.worker.retry import with_retries

POLICY = RetryPolicy(max_attempts=4, base_delay=0.0001, max_delay=0.001)


class Flaky:
    """Fails with `errors` in turn, then answers "done"."""

    def __init__(self, *errors: AwsCallError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def error(code: str, status: int = 400) -> AwsCallError:
    return AwsCallError("kms:CreateGrant", code, "no", status=status)


async def test_retryable_errors_are_retried_until_the_call_succeeds() -> None:
    call = Flaky(error("ThrottlingException"), error("InternalError", 500), error("ExpiredToken"))

    assert await with_retries(POLICY, call) == "done"
    assert call.calls == 4


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "InvalidArnException", "NotFoundException", "Whatever"]
)
async def test_an_error_that_is_not_retryable_is_raised_after_one_call(code: str) -> None:
    call = Flaky(error(code))

    with pytest.raises(AwsCallError) as raised:
        await with_retries(POLICY, call)

    assert raised.value.code == code
    assert call.calls == 1


async def test_retries_stop_after_max_attempts_with_the_last_error() -> None:
    call = Flaky(*[error("ThrottlingException")] * 3, error("RequestLimitExceeded", 503))

    with pytest.raises(AwsCallError) as raised:
        await with_retries(POLICY, call)

    assert raised.value.code == "RequestLimitExceeded"
    assert call.calls == POLICY.max_attempts


async def test_one_attempt_is_no_retry() -> None:
    call = Flaky(error("ThrottlingException"))

    with pytest.raises(AwsCallError):
        await with_retries(RetryPolicy(max_attempts=1), call)
    assert call.calls == 1


def test_backoff_is_full_jitter_within_the_cap() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=0.2, max_delay=5.0)

    for attempt in range(1, 10):
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(0 <= d <= min(5.0, 0.2 * 2**attempt) for d in delays)
