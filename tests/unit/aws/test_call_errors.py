"""AWS errors are classified once, by code (and status, and message where AWS reuses a code):
what is retried, what is one destination's fault, what stops the job."""

from __future__ import annotations

import pytest

from app.aws.call_errors import (
    ACCESS_DENIED_CODES,
    EXPIRED_CREDENTIAL_CODES,
    INVALID_PRINCIPAL_CODES,
    THROTTLING_CODES,
    TRANSIENT_CODES,
    AwsCallError,
    ErrorKind,
    classify,
)

# What KMS says with MalformedPolicyDocumentException, in its two meanings.
INVALID_PRINCIPALS = "Policy contains a statement with one or more invalid principals."
LOCKOUT = "The new key policy will not allow you to update the key policy in the future."

CASES = [
    *[
        pytest.param(code, None, "", ErrorKind.THROTTLED, id=code)
        for code in sorted(THROTTLING_CODES)
    ],
    *[
        pytest.param(code, None, "", ErrorKind.TRANSIENT, id=code)
        for code in sorted(TRANSIENT_CODES)
    ],
    pytest.param("SomethingNew", 500, "", ErrorKind.TRANSIENT, id="unknown-code-500"),
    pytest.param("SomethingNew", 503, "", ErrorKind.TRANSIENT, id="unknown-code-503"),
    pytest.param("AccessDenied", 500, "", ErrorKind.TRANSIENT, id="any-code-with-a-5xx"),
    pytest.param("RequestLimitExceeded", 503, "", ErrorKind.THROTTLED, id="throttled-503"),
    *[
        pytest.param(code, 400, "", ErrorKind.EXPIRED_CREDENTIALS, id=code)
        for code in sorted(EXPIRED_CREDENTIAL_CODES)
    ],
    *[
        pytest.param(code, 403, "", ErrorKind.ACCESS_DENIED, id=code)
        for code in sorted(ACCESS_DENIED_CODES)
    ],
    pytest.param(
        "MalformedPolicyDocumentException",
        400,
        INVALID_PRINCIPALS,
        ErrorKind.INVALID_PRINCIPAL,
        id="malformed-policy-invalid-principal",
    ),
    pytest.param(
        "MalformedPolicyDocumentException",
        400,
        LOCKOUT,
        ErrorKind.POLICY_REJECTED,
        id="malformed-policy-lockout",
    ),
    *[
        pytest.param(code, 400, "", ErrorKind.INVALID_PRINCIPAL, id=code)
        for code in sorted(INVALID_PRINCIPAL_CODES)
    ],
    pytest.param("InvalidAMIID.NotFound", 400, "", ErrorKind.NOT_FOUND, id="ami-not-found"),
    pytest.param("InvalidAMIID.Malformed", 400, "", ErrorKind.NOT_FOUND, id="ami-malformed"),
    pytest.param("InvalidAMIID.Unavailable", 400, "", ErrorKind.NOT_FOUND, id="ami-unavailable"),
    pytest.param("InvalidSnapshot.NotFound", 400, "", ErrorKind.NOT_FOUND, id="snapshot"),
    pytest.param("NotFoundException", 400, "", ErrorKind.NOT_FOUND, id="kms-not-found"),
    pytest.param(
        "LimitExceededException",
        400,
        "The key policy exceeds the maximum size",
        ErrorKind.POLICY_TOO_LARGE,
        id="policy-too-large",
    ),
    pytest.param(
        "LimitExceededException", 400, "Too many grants", ErrorKind.PERMANENT, id="other-limit"
    ),
    pytest.param("OperationNotPermitted", 400, "", ErrorKind.PERMANENT, id="not-permitted"),
    pytest.param("ValidationException", 400, "", ErrorKind.PERMANENT, id="validation"),
    pytest.param("InvalidSnapshot.InUse", 400, "", ErrorKind.PERMANENT, id="snapshot-in-use"),
]
RETRYABLE = {ErrorKind.THROTTLED, ErrorKind.TRANSIENT, ErrorKind.EXPIRED_CREDENTIALS}


@pytest.mark.parametrize(("code", "status", "message", "kind"), CASES)
def test_each_code_is_classified_once_and_only_some_kinds_are_retried(
    code: str, status: int | None, message: str, kind: ErrorKind
) -> None:
    error = AwsCallError("kms:PutKeyPolicy", code, message, status=status)

    assert classify(code, status, message) is kind
    assert error.kind is kind
    assert error.retryable is (kind in RETRYABLE)


def test_every_kind_is_reachable() -> None:
    reached = {param.values[3] for param in CASES}

    assert reached == set(ErrorKind)


def test_the_same_malformed_policy_code_names_a_principal_only_when_aws_says_principal() -> None:
    code = "MalformedPolicyDocumentException"

    assert classify(code, 400, "one or more invalid PRINCIPALS") is ErrorKind.INVALID_PRINCIPAL
    assert classify(code, 400, "") is ErrorKind.POLICY_REJECTED
    assert not AwsCallError("kms:PutKeyPolicy", code, LOCKOUT, status=400).retryable


def test_the_error_says_what_a_person_needs_to_act_on_it() -> None:
    error = AwsCallError(
        "ec2:ModifyImageAttribute", "AuthFailure", "not yours", status=403, request_id="r-1"
    )

    assert str(error) == "ec2:ModifyImageAttribute: AuthFailure: not yours"
    assert (error.operation, error.code, error.message) == (
        "ec2:ModifyImageAttribute",
        "AuthFailure",
        "not yours",
    )
    assert (error.status, error.request_id) == (403, "r-1")
