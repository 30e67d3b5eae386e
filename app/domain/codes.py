"""Stable error codes (docs/design.md, "Errors") and the exceptions that carry them."""

from __future__ import annotations

from enum import StrEnum


class JobErrorCode(StrEnum):
    IMAGE_NOT_FOUND = "ImageNotFound"
    IMAGE_NOT_OWNED = "ImageNotOwned"
    IMAGE_NOT_AVAILABLE = "ImageNotAvailable"
    INSTANCE_STORE_NOT_SUPPORTED = "InstanceStoreNotSupported"
    AWS_MANAGED_KEY = "AwsManagedKey"
    KEY_POLICY_TOO_LARGE = "KeyPolicyTooLarge"
    # A statement with one of the service's Sids is in a shape it never writes.
    KEY_POLICY_CONFLICT = "KeyPolicyConflict"
    # KMS refused the edited policy as a whole (its lockout safety check).
    KEY_POLICY_REJECTED = "KeyPolicyRejected"
    # `reencrypt`'s key does not exist, is disabled or is AWS-managed.
    REENCRYPT_KEY_UNAVAILABLE = "ReencryptKeyUnavailable"
    # The key named for one of `regions` does not exist there, is disabled or AWS-managed.
    REGION_KEY_UNAVAILABLE = "RegionKeyUnavailable"
    # The copy the job shares (re-encrypted in the source) went `failed` or timed out.
    COPY_FAILED = "CopyFailed"
    SOURCE_ACCESS_DENIED = "SourceAccessDenied"
    # The job's source account is no longer among the allowed ones (AMISHARE_ALLOWED_SOURCES).
    SOURCE_NOT_ALLOWED = "SourceNotAllowed"
    SOURCE_ROLE_UNAVAILABLE = "SourceRoleUnavailable"
    TOO_MANY_ATTEMPTS = "TooManyAttempts"
    AWS_ERROR = "AwsError"
    INTERNAL_ERROR = "InternalError"


class TargetErrorCode(StrEnum):
    INVALID_ACCOUNT_ID = "InvalidAccountId"
    ACCESS_DENIED = "AccessDenied"
    DESTINATION_ROLE_UNAVAILABLE = "DestinationRoleUnavailable"
    NOT_VISIBLE_IN_DESTINATION = "NotVisibleInDestination"
    # After a revoke the destination can still see the image (a revoke with verification).
    STILL_VISIBLE_IN_DESTINATION = "StillVisibleInDestination"
    THROTTLED = "Throttled"
    COPY_FAILED = "CopyFailed"
    DESTINATION_NOT_ALLOWED = "DestinationNotAllowed"
    DESTINATION_KEY_UNAVAILABLE = "DestinationKeyUnavailable"
    AWS_ERROR = "AwsError"


class JobFailedError(Exception):
    """The whole job stops: nothing (more) is changed on AWS."""

    def __init__(self, code: JobErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
