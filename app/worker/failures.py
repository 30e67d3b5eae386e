"""How a failed call ends a job or a target: one code for each kind of failure."""

from __future__ import annotations

from dataclasses import dataclass

from app.aws.call_errors import AwsCallError, ErrorKind
from app.domain.codes import JobErrorCode, JobFailedError, TargetErrorCode


def source_failure(error: AwsCallError) -> JobFailedError:
    """A source-side call failed for a reason that is not about one destination."""
    if error.operation == "sts:AssumeRole":
        return JobFailedError(
            JobErrorCode.SOURCE_ROLE_UNAVAILABLE,
            f"Could not assume the source role ({error.code}): check that it exists in the "
            f"source account and trusts the service. AWS said: {error.message}",
        )
    if error.kind is ErrorKind.ACCESS_DENIED:
        return JobFailedError(
            JobErrorCode.SOURCE_ACCESS_DENIED,
            f"The source account refused {error.operation} ({error.code}): give the service's "
            f"role that permission. AWS said: {error.message}",
        )
    if error.kind is ErrorKind.POLICY_REJECTED:
        return JobFailedError(
            JobErrorCode.KEY_POLICY_REJECTED,
            f"KMS refused the edited key policy as a whole ({error.code}): it would no longer "
            "let the service's own identity change the policy (KMS's lockout safety check). "
            "Give that identity kms:PutKeyPolicy in a statement of the key policy, then retry. "
            f"AWS said: {error.message}",
        )
    if error.kind is ErrorKind.POLICY_TOO_LARGE:
        return JobFailedError(
            JobErrorCode.KEY_POLICY_TOO_LARGE,
            f"KMS refused the key policy as too large: {error.message}. Use kms_access "
            "'grant', or share with an organization or OU instead of many accounts.",
        )
    return JobFailedError(
        JobErrorCode.AWS_ERROR, f"{error.operation} failed ({error.code}): {error.message}"
    )


@dataclass(frozen=True, slots=True)
class TargetFailure:
    """Why one destination failed: a stable code and a message a person can act on."""

    code: TargetErrorCode
    message: str


def destination_failure(account_id: str, error: AwsCallError) -> TargetFailure:
    """A destination-side call failed: that destination fails alone, with a code."""
    if error.kind is ErrorKind.THROTTLED:
        return TargetFailure(
            TargetErrorCode.THROTTLED, f"Still throttled after retries: {error.message}"
        )
    if error.operation == "sts:AssumeRole":
        return TargetFailure(
            TargetErrorCode.DESTINATION_ROLE_UNAVAILABLE,
            f"Could not assume the destination role in {account_id} ({error.code}): "
            f"{error.message}",
        )
    if error.kind is ErrorKind.ACCESS_DENIED:
        return TargetFailure(
            TargetErrorCode.ACCESS_DENIED,
            f"{error.operation} was denied in {account_id}: {error.message}",
        )
    return TargetFailure(
        TargetErrorCode.AWS_ERROR, f"{error.operation} failed ({error.code}): {error.message}"
    )
