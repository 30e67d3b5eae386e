"""AWS errors, classified once (docs/design.md, "Errors")."""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    NOT_FOUND = "not_found"
    ACCESS_DENIED = "access_denied"
    INVALID_PRINCIPAL = "invalid_principal"
    POLICY_TOO_LARGE = "policy_too_large"
    # A key policy KMS refuses as a whole (its lockout safety check), not for one principal.
    POLICY_REJECTED = "policy_rejected"
    # Session credentials ran out: assume the role again and retry.
    EXPIRED_CREDENTIALS = "expired_credentials"
    PERMANENT = "permanent"


THROTTLING_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "LimitExceededException.Throttling",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "KMSInternalException",
        "DependencyTimeoutException",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
        "ConnectionError",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthFailure",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "KMSInvalidStateException",
    }
)
# STS, KMS and other JSON services, and EC2, for session credentials that have expired.
EXPIRED_CREDENTIAL_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
INVALID_PRINCIPAL_CODES = frozenset(
    {
        "InvalidAMIAttributeItemValue",
        "InvalidArnException",
        "InvalidParameterValue",
        "InvalidUserID.Malformed",
    }
)


class AwsCallError(Exception):
    """An AWS call that failed, with what a person needs to act on it."""

    def __init__(
        self,
        operation: str,
        code: str,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id

    @property
    def kind(self) -> ErrorKind:
        return classify(self.code, self.status, self.message)

    @property
    def retryable(self) -> bool:
        return self.kind in (
            ErrorKind.THROTTLED,
            ErrorKind.TRANSIENT,
            ErrorKind.EXPIRED_CREDENTIALS,
        )


def classify(code: str, status: int | None = None, message: str = "") -> ErrorKind:
    if code in THROTTLING_CODES:
        return ErrorKind.THROTTLED
    if code in TRANSIENT_CODES or (status is not None and status >= 500):
        return ErrorKind.TRANSIENT
    if code in EXPIRED_CREDENTIAL_CODES:
        return ErrorKind.EXPIRED_CREDENTIALS
    if code in ACCESS_DENIED_CODES:
        return ErrorKind.ACCESS_DENIED
    if code == "MalformedPolicyDocumentException":
        # The same code says "this principal does not exist" and "this policy would lock you
        # out"; only the first is about one destination.
        invalid_principal = "principal" in message.lower()
        return ErrorKind.INVALID_PRINCIPAL if invalid_principal else ErrorKind.POLICY_REJECTED
    if code.endswith(".NotFound") or code in ("NotFoundException", "InvalidAMIID.Unavailable"):
        return ErrorKind.NOT_FOUND
    if code == "LimitExceededException" and "policy" in message.lower():
        return ErrorKind.POLICY_TOO_LARGE
    if code in INVALID_PRINCIPAL_CODES or code.startswith("InvalidAMIID"):
        return ErrorKind.INVALID_PRINCIPAL if "AMIID" not in code else ErrorKind.NOT_FOUND
    return ErrorKind.PERMANENT
