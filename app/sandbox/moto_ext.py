"""amishare's extension of moto 5.2.5: exactly the AWS behaviour the service needs and moto lacks.

`install()` patches moto's classes in place (idempotent). Every patch is one small function whose
comment names the AWS behaviour it models; helpers below them are shared plumbing.

Choices worth knowing (see also the project's AWS notes, docs/aws.md):
- Instance-store AMIs: `RegisterImage` with `ImageLocation` (the S3-manifest form AWS uses for
  instance-store AMIs), or whose root device mapping is not EBS (e.g. only `VirtualName`
  ephemeral mappings), gets `RootDeviceType: instance-store`. With an EBS root mapping it is
  `ebs` and points at the given snapshots; without any mapping moto's auto-created unencrypted
  snapshot is kept and `RootDeviceType` is `ebs`.
- Cross-account `DescribeKey`: a key policy grants an account only through an Allow statement
  whose `AWS` principal is `arn:aws:iam::<acct>:root` or the bare account id (a role ARN names
  that role, not the account), or `*`. A statement with any `Condition` never matches, Allow or
  Deny: the double has no organisations (`aws:PrincipalOrgID`) and its caller is never an AWS
  service acting for a resource (`kms:GrantIsForAWSResource`). A matching Deny wins over the
  policy's Allows (not over grants). Grants count when their grantee is any principal of the
  caller's account and their operations include `DescribeKey`.
- Cross-account `CreateGrant` (the key's full ARN) and `ListGrants` are decided the same way for
  `kms:CreateGrant` / `kms:ListGrants`. A grant whose operations include `CreateGrant` lets its
  grantee's account create grants with only operations that grant has (its constraints are not
  compared). A grant's `IssuingAccount` is `arn:aws:iam::<acct>:root` of the account that called
  CreateGrant; a retry returning an existing grant by Name keeps its issuer. The key owner's
  RevokeGrant removes any grant on the key, whoever issued it.
- `ListGrants` filters by `GranteePrincipal` (exact string) and `GrantId`, lists grants in
  creation order, and pages with `Limit` (1-100, default 50): `NextMarker` (only while
  `Truncated`) names the next grant by its creation order, so revoking grants already listed
  does not disturb the next page.
- `PutKeyPolicy`'s lockout safety check (skipped with `BypassPolicyLockoutSafetyCheck`): the new
  policy must let the caller call PutKeyPolicy: an Allow naming its account (root ARN, bare id),
  `*`, or, for an assumed-role caller, the role's ARN (`arn:aws:iam::<acct>:role/<name>`, as
  given to AssumeRole), with an action matching `kms:PutKeyPolicy` (`kms:*`, `kms:Put*`), and no
  Deny naming it. The same conditions rule as above. CreateKey does not make this check here.
- `AssumeRole` answers with the `SourceIdentity` it was given (moto drops it) and checks it and
  `RoleSessionName` against 2-64 characters of `[\\w+=,.@-]`.
- STS-issued access keys are remembered with their issue time (`credentials_age()`): the
  double's `credential_lifetime_seconds` fault answers older ones as expired.
- Unknown accounts ("do not exist") come from `set_unknown_accounts()` or the comma-separated
  env var AMISHARE_DOUBLE_UNKNOWN_ACCOUNTS (read at import and at the first `install()`). They
  are refused when added (key policy, grant, launch or create-volume permission); removing an
  account's permissions always works, so a revoke after an account was closed succeeds.
- Beyond what moto lacks outright, because the service relies on them: CreateGrant is
  idempotent by Name (same parameters: same grant), only the owner may modify/describe/reset
  an AMI's attributes once shared AMIs are visible to others (`_describe_images`), an
  encrypted snapshot cannot be made public and an aws/ebs-encrypted snapshot cannot be shared
  with accounts.
- `CopyImage` (moto copies only the caller's own images, as an unencrypted 15 GiB stub) is
  made by the account that will own the copy, in its client Region, from `SourceRegion`. The
  source must be the caller's or have a launch permission naming its account (or `all`); for
  another account's image every backing snapshot needs createVolumePermission for the caller
  (or `all`), and each snapshot's key must be enabled and allow the caller kms:DescribeKey,
  kms:Decrypt and kms:CreateGrant (key policy or grant, read as for DescribeKey, except that a
  CreateGrant statement whose only condition is `kms:GrantIsForAWSResource` true counts: EBS
  makes that grant for the caller). The copy is a new image with new snapshots (volume ID
  `vol-ffffffff`), all owned by the caller, `from_ami` the copy, `SourceImageId` and
  `SourceImageRegion` set. Keys: `KmsKeyId` (needs `Encrypted`; a key ID, key ARN, alias or
  alias ARN of the caller's account and Region, enabled, symmetric); else, `Encrypted` or an
  encrypted source snapshot, the caller's default EBS key (alias/aws/ebs, created if missing,
  AWS managed), except that an unencrypted-flag copy of the caller's own image in the same
  Region keeps each snapshot's key; an unencrypted snapshot stays unencrypted without
  `Encrypted`. An encrypted snapshot never becomes unencrypted.
- As AWS checks keys asynchronously, key problems do not fail the call: the copy is made and
  ends `failed` (a source key the caller may not use, or a `KmsKeyId` that is missing, disabled,
  asymmetric, of another Region or account). Both are decided when CopyImage is called.
- A copy is `pending` (its snapshots `pending`) for `CopySettings.seconds` after the call, then
  `available` (snapshots `completed`) or `failed` with `StateReason` (snapshots `error` with
  `StateMessage`); states are settled lazily, by CopyImage, DescribeImages, DescribeSnapshots
  and DeregisterImage (no thread). Chosen copies fail by `CopySettings` (account, Name pattern,
  rate), with `StateReason` `Server.InternalError`. Pending copies per account and Region are
  capped by `CopySettings.max_pending` (0: no cap).
- `ClientToken` (1-64 ASCII characters, case-sensitive), per account and Region: the same token
  with the same parameters answers the first copy's ImageId (even after it was deregistered).
- `CopyImageTags` copies the tags the caller sees on the source (its own image's tags; for
  another account's image, only tags the caller put on it), never `aws:` ones;
  `TagSpecifications` tag the new image (`image`) and every new snapshot (`snapshot`) and win
  over copied tags.
- `DeregisterImage` of a pending copy stops it and deletes its unfinished snapshots; of any
  other image it leaves the snapshots unless `DeleteAssociatedSnapshots` (then those no other
  image of the account uses are deleted and listed in `DeleteSnapshotResults`).

Rejections and the error codes chosen ([doc] AWS documentation or botocore model, [seen] seen
from AWS or an AWS-compatible API in public sources, [guess] not confirmed):
- PutKeyPolicy/CreateKey over 32768 bytes: LimitExceededException [doc: PutKeyPolicy's Policy
  parameter says so].
- PutKeyPolicy/CreateKey naming an unknown account: MalformedPolicyDocumentException "Policy
  contains a statement with one or more invalid principals." [seen].
- CreateGrant to an unknown account: InvalidArnException [doc: CreateGrant's error list has no
  MalformedPolicyDocumentException; seen for not-yet-visible principals]; message [guess].
- Launch permission / createVolumePermission for a malformed or unknown account:
  InvalidAMIAttributeItemValue 'Invalid attribute item value "<id>" for userId item type.'
  [seen for images; for snapshots seen from Outscale's AWS-compatible API].
- More than 500 createVolumePermission changes: InvalidParameterValue [guess].
- Add and Remove in one ModifySnapshotAttribute: InvalidParameterCombination [guess].
- Sharing an aws/ebs-encrypted snapshot with an account: OperationNotPermitted [guess];
  making an encrypted snapshot public: OperationNotPermitted "Encrypted snapshots cannot be
  shared publicly" [seen].
- Changing or describing attributes of another account's (shared) AMI: AuthFailure [guess].
- Cross-account DescribeKey / CreateGrant / ListGrants not allowed: AccessDeniedException
  [doc]; missing key (also on the caller's own CreateGrant/ListGrants, where moto crashed):
  NotFoundException [doc].
- A grant created through a parent grant with an operation the parent lacks:
  AccessDeniedException [guess: a permission problem, like the call with no parent at all].
- ListGrants `Limit` outside 1-100: ValidationException [guess: the documented range; the
  botocore model says up to 1000]; a `Marker` the double did not issue: InvalidMarkerException
  [doc: ListGrants' error list], message [guess].
- PutKeyPolicy locking the caller out: MalformedPolicyDocumentException "The new key policy will
  not allow you to update the key policy in the future." [seen]. Size and invalid principals
  are checked (and reported as such) first.
- AssumeRole with a RoleSessionName or SourceIdentity outside 2-64 characters of [\\w+=,.@-]:
  ValidationError [seen: STS's code for constraint violations], message [guess].
- CopyImage of an image that is not the caller's and not shared with it (or does not exist in
  SourceRegion): InvalidAMIID.NotFound "The image id '[ami-…]' does not exist" [doc: the code
  EC2 gives for images it does not show the caller]; malformed ID: InvalidAMIID.Malformed.
- CopyImage of another account's image without createVolumePermission on all its snapshots:
  InvalidRequest "You do not have permission to access the storage of this ami." [seen].
- CopyImage with KmsKeyId but not Encrypted: InvalidParameterDependency "The parameter
  [KmsKeyId] requires the parameter Encrypted to be set." [doc: "If you specify a KMS key, you
  must also set the encrypted state to true"; code and message seen from CreateVolume, guess
  for CopyImage].
- CopyImage with a ClientToken over 64 characters or not ASCII: InvalidParameterValue [guess];
  a token used with other parameters: IdempotentParameterMismatch [doc: EC2 idempotency],
  message [guess].
- CopyImage with a TagSpecifications resource type other than image or snapshot:
  InvalidParameterValue "'<type>' is not a valid taggable resource type for this operation."
  [doc: "the request fails"; code and message as moto's, guess].
- CopyImage of an image that is not `available` (e.g. a pending copy): IncorrectState [guess].
- CopyImage beyond `max_pending` pending copies: ResourceLimitExceeded "Too many image copies in
  progress. The limit is <n> for this destination region." [doc: "Destination Regions are
  limited to 50 concurrent AMI copies" (older EC2 User Guide); message modelled on CopySnapshot's
  seen "Too many snapshot copies in progress. The limit is 5 for this destination region."].
- A copy whose source key the caller may not use ends `failed` with StateReason
  Client.InternalError [guess: a code from botocore's StateReason list] "AMI snapshot copy failed
  with error: Given key ID is not accessible. You must have DescribeKey permissions on the
  default CMK" [seen; "Given key ID is not accessible" is the EBS User Guide's snapshot-copy
  message]. One whose KmsKeyId cannot be used: Client.InternalError [guess] "Copy image failed
  with an internal error." [seen for invalid KMS key IDs; doc: "if you specify an identifier
  that is not valid, the action can appear to complete, but eventually fails"]. An injected
  failure: Server.InternalError [doc: StateReason codes] with the same message.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import moto
import moto.core.responses as moto_responses
import moto.iam.models as iam_models
import moto.kms.models as kms_models
from moto.core.base_backend import BackendDict
from moto.core.exceptions import JsonRESTError
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import method_names_from_class, unix_time
from moto.ec2.exceptions import (
    EC2ClientError,
    InvalidAMIAttributeItemValueError,
    InvalidAMIIdError,
    InvalidParameterDependency,
    InvalidTaggableResourceType,
    MalformedAMIIdError,
)
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.utils import random_ami_id, random_snapshot_id
from moto.kms.models import Grant, Key, KmsBackend, kms_backends
from moto.kms.responses import KmsResponse
from moto.sts.exceptions import STSValidationError
from moto.sts.models import STSBackend, sts_backends
from moto.sts.responses import TokenResponse
from moto.utilities.utils import PARTITION_NAMES

MOTO_VERSION = "5.2.5"
UNKNOWN_ACCOUNTS_ENV = "AMISHARE_DOUBLE_UNKNOWN_ACCOUNTS"
MAX_KEY_POLICY_BYTES = 32768
MAX_SNAPSHOT_PERMISSION_CHANGES = 500
INVALID_PRINCIPALS_MESSAGE = "Policy contains a statement with one or more invalid principals."
LOCKOUT_MESSAGE = "The new key policy will not allow you to update the key policy in the future."
LIST_GRANTS_MAX_LIMIT = 100
LIST_GRANTS_DEFAULT_LIMIT = 50
MAX_CLIENT_TOKEN_LENGTH = 64
DEFAULT_MAX_PENDING_COPIES = 50  # "Destination Regions are limited to 50 concurrent AMI copies"
COPY_KEY_OPERATIONS = ("DescribeKey", "Decrypt", "CreateGrant")
COPIED_VOLUME_ID = "vol-ffffffff"  # AWS: copies have an arbitrary volume ID
COPY_STORAGE_DENIED_MESSAGE = "You do not have permission to access the storage of this ami."
COPY_INTERNAL_ERROR_MESSAGE = "Copy image failed with an internal error."
COPY_KEY_NOT_ACCESSIBLE_MESSAGE = (
    "AMI snapshot copy failed with error: Given key ID is not accessible. You must have "
    "DescribeKey permissions on the default CMK"
)
IDEMPOTENT_MISMATCH_MESSAGE = (
    "Arguments on this idempotent request are inconsistent with arguments used in previous "
    "request(s)."
)

_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_PRINCIPAL_ACCOUNT = re.compile(r"arn:[\w-]+:(?:iam|sts)::([0-9]{12}):.+")
_KMS_ARN = re.compile(r"arn:[\w-]+:kms:([\w-]+):([0-9]{12}):(?:key|alias)/.+")
_STS_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)  # RoleSessionName and SourceIdentity

_originals: dict[tuple[type, str], Any] = {}
_install_lock = threading.Lock()
_installed = False


def _accounts_from_env() -> frozenset[str]:
    raw = os.environ.get(UNKNOWN_ACCOUNTS_ENV, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


_unknown_accounts: frozenset[str] = _accounts_from_env()


def set_unknown_accounts(ids: Iterable[str]) -> None:
    """Declare the AWS accounts that "do not exist": principals naming them are refused."""
    global _unknown_accounts
    _unknown_accounts = frozenset(ids)


def unknown_accounts() -> frozenset[str]:
    return _unknown_accounts


def is_installed() -> bool:
    return _installed


def forget_lookups() -> None:
    """Drop the speed-up indexes (access key → account, image → owner) and the issue times of
    STS credentials, as after a reset."""
    _key_accounts.clear()
    _image_owners.clear()
    _key_issued.clear()


def credentials_age(access_key: str) -> float | None:
    """Seconds since STS issued this access key; None for a key STS did not issue."""
    issued = _key_issued.get(access_key)
    return None if issued is None else time.monotonic() - issued


@dataclass(frozen=True)
class CopySettings:
    """How CopyImage copies behave; the double's FaultConfig sets them (`set_copy_settings`).

    `seconds`: how long a copy stays pending. A copy fails when its caller's account is in
    `fail_accounts`, its Name matches one of `fail_names` (fnmatch patterns, case-sensitive), or
    a draw from random.Random(`seed`) is below `fail_rate`. `max_pending`: pending copies allowed
    per account and Region (0: no limit)."""

    seconds: float = 0.0
    fail_rate: float = 0.0
    fail_accounts: frozenset[str] = frozenset()
    fail_names: tuple[str, ...] = ()
    max_pending: int = DEFAULT_MAX_PENDING_COPIES
    seed: int = 0


_copy_settings = CopySettings()
_copy_random = random.Random(0)


def set_copy_settings(settings: CopySettings) -> None:
    """Apply to copies started from now on (a pending copy keeps its end time and outcome)."""
    global _copy_settings, _copy_random
    _copy_settings = settings
    _copy_random = random.Random(settings.seed)


def copy_settings() -> CopySettings:
    return _copy_settings


def forget_copies() -> None:
    """Drop pending copies and CopyImage client tokens, as after a reset."""
    _copy_jobs.clear()
    _copy_tokens.clear()


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _original(owner: type, name: str) -> Any:
    return _originals[(owner, name)]


def _is_account_id(value: str) -> bool:
    return bool(_ACCOUNT_ID.fullmatch(value))


def _principal_account(principal: str) -> str | None:
    if _is_account_id(principal):
        return principal
    match = _PRINCIPAL_ACCOUNT.fullmatch(principal)
    return match.group(1) if match else None


def _kms_error(code: str, message: str) -> JsonRESTError:
    return JsonRESTError(code, message)


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _statements(policy: str) -> list[dict[str, Any]]:
    document = json.loads(policy)
    if not isinstance(document, dict):
        raise ValueError("policy is not a JSON object")
    return [s for s in _as_list(document.get("Statement")) if isinstance(s, dict)]


def _aws_principals(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    if isinstance(principal, dict):
        return [str(p) for p in _as_list(principal.get("AWS"))]
    return []


def _key_arn(account_id: str, region: str, key_id: str) -> str:
    try:
        return str(kms_backends[account_id][region].describe_key(key_id).arn)
    except (KeyError, AttributeError):
        return key_id


def _images_shared_with(
    account_id: str, region: str, only: Iterable[str] | None = None
) -> dict[str, Any]:
    """Other accounts' images whose launch permissions name `account_id` (among `only`)."""
    if only is not None:
        return _named_images_shared_with(account_id, region, list(only))
    found: dict[str, Any] = {}
    for owner, per_region in list(ec2_backends.items()):
        backend = dict.get(per_region, region)  # dict.get: never creates a backend
        if owner == account_id or backend is None:
            continue
        for ami in list(backend.amis.values()):
            if _launchable_by(ami, account_id):
                found[ami.id] = ami
    return found


# Not an AWS behaviour but the double's speed: where each image ID was last found (owner,
# region), so that looking an image up by ID does not visit every account of a large run.
_image_owners: dict[str, str] = {}


def _launchable_by(ami: Any, account_id: str) -> bool:
    """Launch permission names the account, or the image is public (`Group: all`)."""
    return any(
        lp.get("UserId") == account_id or lp.get("Group") == "all" for lp in ami.launch_permissions
    )


def _named_images_shared_with(account_id: str, region: str, ami_ids: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ami_id in ami_ids:
        ami = _find_image(ami_id, region)
        if ami is None or _image_owners.get(ami_id) == account_id:
            continue
        if _launchable_by(ami, account_id):
            found[ami.id] = ami
    return found


def _find_image(ami_id: str, region: str) -> Any:
    owner = _image_owners.get(ami_id)
    if owner is not None:
        ami = _image_in(owner, region, ami_id)
        if ami is not None:
            return ami
    for account, per_region in list(ec2_backends.items()):
        backend = dict.get(per_region, region)
        if backend is not None and ami_id in backend.amis:
            _image_owners[ami_id] = account
            return backend.amis[ami_id]
    return None


def _image_in(owner: str, region: str, ami_id: str) -> Any:
    per_region = dict.get(ec2_backends, owner)
    backend = None if per_region is None else dict.get(per_region, region)
    return None if backend is None else backend.amis.get(ami_id)


def _own_image(backend: Any, ami_id: str) -> Any:
    if not str(ami_id).startswith("ami-"):
        raise MalformedAMIIdError([ami_id])
    if ami_id in backend.amis:
        return backend.amis[ami_id]
    if ami_id in _images_shared_with(backend.account_id, backend.region_name, only=[ami_id]):
        raise EC2ClientError("AuthFailure", f"Not authorized for image:{ami_id}")
    raise InvalidAMIIdError(ami_id)


def _check_user_ids(user_ids: Iterable[str], adding: bool) -> None:
    """Malformed IDs are refused either way; unknown accounts only when added."""
    for user_id in user_ids:
        if not _is_account_id(user_id) or (adding and user_id in _unknown_accounts):
            raise InvalidAMIAttributeItemValueError("userId", user_id)


def _check_principals_exist(principals: Iterable[str], error: JsonRESTError) -> None:
    for principal in principals:
        if _principal_account(principal) in _unknown_accounts:
            raise error


def _check_key_policy(policy: str) -> None:
    if len(policy.encode("utf-8")) > MAX_KEY_POLICY_BYTES:
        raise _kms_error(
            "LimitExceededException",
            f"Policy document exceeds the maximum size of {MAX_KEY_POLICY_BYTES} bytes.",
        )
    try:
        statements = _statements(policy)
    except ValueError as exc:
        raise _kms_error("MalformedPolicyDocumentException", "Invalid policy document.") from exc
    invalid = _kms_error("MalformedPolicyDocumentException", INVALID_PRINCIPALS_MESSAGE)
    for statement in statements:
        _check_principals_exist(_aws_principals(statement), invalid)


def _mapping(backend: Any, requested: Mapping[str, Any]) -> dict[str, Any]:
    if requested.get("VirtualName"):
        return {"DeviceName": requested["DeviceName"], "VirtualName": requested["VirtualName"]}
    ebs = dict(requested.get("Ebs") or {})
    out: dict[str, Any] = {
        "DeleteOnTermination": ebs.get("DeleteOnTermination", True),
        "VolumeType": ebs.get("VolumeType", "gp2"),
    }
    if ebs.get("SnapshotId"):
        snapshot = backend.get_snapshot(ebs["SnapshotId"])
        out.update(
            SnapshotId=snapshot.id,
            VolumeSize=ebs.get("VolumeSize") or snapshot.volume_size,
            Encrypted=bool(snapshot.encrypted),
        )
    else:
        out.update(VolumeSize=ebs.get("VolumeSize", 8), Encrypted=bool(ebs.get("Encrypted")))
    return {"DeviceName": requested["DeviceName"], "Ebs": out}


def _root_device_type(mappings: list[dict[str, Any]], root: str, image_location: str) -> str:
    root_mapping = next((m for m in mappings if m["DeviceName"] == root), None)
    is_ebs = root_mapping is not None and "Ebs" in root_mapping and not image_location
    return "ebs" if is_ebs else "instance-store"


def _shape_registered_image(backend: Any, ami: Any, request: Any) -> None:
    requested = request._get_param("BlockDeviceMappings", [])
    image_location = request._get_param("ImageLocation") or ""
    if not requested and not image_location:
        ami.root_device_type = "ebs"
        return
    mappings = [_mapping(backend, m) for m in requested]
    backend.snapshots.pop(ami.ebs_snapshot.id, None)  # drop moto's auto-created snapshot
    ami.root_device_name = request._get_param("RootDeviceName") or (
        mappings[0]["DeviceName"] if mappings else "/dev/sda1"
    )
    ami.image_location = image_location or None
    ami.amishare_block_device_mappings = mappings
    ami.root_device_type = _root_device_type(mappings, ami.root_device_name, image_location)
    for mapping in mappings:
        if mapping.get("Ebs", {}).get("SnapshotId"):
            backend.get_snapshot(mapping["Ebs"]["SnapshotId"]).from_ami = ami.id


def _statement_names_account(
    statement: Mapping[str, Any], account_id: str, role_arn: str | None = None
) -> bool:
    """Whether a statement applies to a caller of `account_id` (acting as `role_arn`, if given).

    A statement with a Condition never applies: the double has no organisations and its caller
    is never an AWS service acting for a resource (kms:GrantIsForAWSResource)."""
    if statement.get("Condition"):
        return False
    named = {"*", account_id, f"arn:aws:iam::{account_id}:root"}
    if role_arn:
        named.add(role_arn)
    return any(p in named for p in _aws_principals(statement))


def _statement_has_action(statement: Mapping[str, Any], action: str) -> bool:
    patterns = [str(a).lower() for a in _as_list(statement.get("Action"))]
    return any(fnmatch.fnmatchcase(action.lower(), pattern) for pattern in patterns)


def _policy_allows(policy: str, account_id: str, action: str, role_arn: str | None = None) -> bool:
    try:
        statements = _statements(policy)
    except ValueError:
        return False
    effects = {
        str(s.get("Effect", "")).lower()
        for s in statements
        if _statement_names_account(s, account_id, role_arn) and _statement_has_action(s, action)
    }
    return "allow" in effects and "deny" not in effects


def _grant_allows(key: Any, account_id: str, operation: str) -> bool:
    return any(
        _principal_account(str(grant.grantee_principal)) == account_id
        and operation in (grant.operations or [])
        for grant in list(key.grants.values())
    )


def _grant_parameters(grant: Any) -> tuple[Any, ...]:
    return (
        grant.name,
        grant.grantee_principal,
        sorted(grant.operations or []),
        grant.constraints,
        grant.retiring_principal,
    )


def _foreign_key_location(key_ref: str, caller: str) -> tuple[str, str] | None:
    """(region, owner account) of a KMS ARN naming another account; None for the caller's own."""
    match = _KMS_ARN.fullmatch(key_ref)
    if not match or match.group(2) == caller:
        return None
    return match.group(1), match.group(2)


def _find_key(region: str, account_id: str, key_ref: str) -> Any:
    per_region = dict.get(kms_backends, account_id)  # dict.get: never creates a backend
    backend = None if per_region is None else dict.get(per_region, region)
    not_found = _kms_error("NotFoundException", f"Key '{key_ref}' does not exist")
    if backend is None:
        raise not_found
    try:
        return backend.describe_key(key_ref)
    except (KeyError, AttributeError) as exc:
        raise not_found from exc


def _require_access(response: Any, key: Any, action: str) -> None:
    caller = response.current_account
    operation = action.split(":", 1)[1]
    if _policy_allows(key.policy, caller, action) or _grant_allows(key, caller, operation):
        return
    raise _access_denied(
        response, key, action, f"no resource-based policy allows the {action} action"
    )


def _access_denied(response: Any, key: Any, action: str, because: str) -> JsonRESTError:
    return _kms_error(
        "AccessDeniedException",
        f"User: {_caller_arn(response)} is not authorized to perform: {action} on resource: "
        f"{key.arn} because {because}",
    )


def _require_grant_access(response: Any, key: Any, operations: list[str]) -> None:
    """A cross-account CreateGrant: the key policy allows it, or a grant with CreateGrant does,
    and then only for operations that parent grant has."""
    caller = response.current_account
    if _policy_allows(key.policy, caller, "kms:CreateGrant"):
        return
    parents = [
        grant
        for grant in list(key.grants.values())
        if _principal_account(str(grant.grantee_principal)) == caller
        and "CreateGrant" in (grant.operations or [])
    ]
    if not parents:
        raise _access_denied(
            response,
            key,
            "kms:CreateGrant",
            "no resource-based policy allows the kms:CreateGrant action",
        )
    if not any(set(operations) <= set(parent.operations) for parent in parents):
        raise _access_denied(
            response,
            key,
            "kms:CreateGrant",
            "the grant that allows kms:CreateGrant does not allow all of the operations "
            + ", ".join(sorted(operations)),
        )


def _assumed_role(response: Any) -> Any:
    try:
        return sts_backends[response.current_account]["aws"].get_assumed_role_from_access_key(
            response.get_access_key()
        )
    except KeyError:
        return None


def _caller_arn(response: Any) -> str:
    role = _assumed_role(response)
    return str(role.arn) if role is not None else f"arn:aws:iam::{response.current_account}:root"


def _caller_role_arn(response: Any) -> str | None:
    """The IAM role (arn:aws:iam::<acct>:role/<name>) an assumed-role caller acts as."""
    role = _assumed_role(response)
    return None if role is None else str(role.role_arn)


def _grants_page(grants: list[Any], limit: object, marker: object) -> tuple[list[Any], str | None]:
    """One ListGrants page of `grants` (in creation order) and the marker of the next, if any."""
    if limit is None:
        limit = LIST_GRANTS_DEFAULT_LIMIT
    if not isinstance(limit, int) or not 1 <= limit <= LIST_GRANTS_MAX_LIMIT:
        raise _kms_error(
            "ValidationException",
            f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy "
            f"constraint: Member must have value between 1 and {LIST_GRANTS_MAX_LIMIT}",
        )
    start = 0
    if marker is not None:
        if not isinstance(marker, str) or not marker.isdigit():
            raise _kms_error("InvalidMarkerException", "Invalid marker.")
        start = int(marker)
    remaining = [g for g in grants if getattr(g, "amishare_order", 0) >= start]
    page, rest = remaining[:limit], remaining[limit:]
    return page, (str(getattr(rest[0], "amishare_order", 0)) if rest else None)


def _invalid_attribute(attribute: object) -> EC2ClientError:
    return EC2ClientError(
        "InvalidParameterValue", f"Value ({attribute}) for parameter attribute is invalid."
    )


def _snapshot_changes(request: Any) -> tuple[str, list[str], list[str]]:
    """(operation, user ids, groups) from either request form of ModifySnapshotAttribute."""
    structured = request._get_param("CreateVolumePermission") or {}
    adds, removes = structured.get("Add") or [], structured.get("Remove") or []
    operation = request._get_param("OperationType")
    if operation in ("add", "remove"):
        listed = [{"UserId": u} for u in request._get_param("UserIds", [])]
        listed += [{"Group": g} for g in request._get_param("GroupNames", [])]
        adds, removes = (adds + listed, removes) if operation == "add" else (adds, removes + listed)
    if adds and removes:
        raise EC2ClientError(
            "InvalidParameterCombination",
            "You cannot add and remove create volume permissions in the same request.",
        )
    changes = adds or removes
    users = [str(c["UserId"]) for c in changes if "UserId" in c]
    groups = [str(c["Group"]) for c in changes if "Group" in c]
    return ("add" if adds else "remove"), users, groups


def _check_snapshot_share(
    snapshot: Any, operation: str, users: list[str], groups: list[str]
) -> None:
    if len(users) + len(groups) > MAX_SNAPSHOT_PERMISSION_CHANGES:
        raise EC2ClientError(
            "InvalidParameterValue",
            f"You can make up to {MAX_SNAPSHOT_PERMISSION_CHANGES} modifications per request.",
        )
    _check_user_ids(users, adding=operation == "add")
    if operation != "add":
        return
    if groups and snapshot.encrypted:
        raise EC2ClientError(
            "OperationNotPermitted", "Encrypted snapshots cannot be shared publicly"
        )
    if users and _is_aws_managed_key(snapshot):
        raise EC2ClientError(
            "OperationNotPermitted",
            "Snapshots encrypted with the AWS managed key for EBS cannot be shared.",
        )


def _is_aws_managed_key(snapshot: Any) -> bool:
    if not snapshot.kms_key_id:
        return False
    backend = snapshot.ec2_backend
    try:
        key = kms_backends[backend.account_id][backend.region_name].describe_key(
            snapshot.kms_key_id
        )
    except (KeyError, AttributeError):
        return False
    return bool(key.key_manager == "AWS")


# --------------------------------------------------------------------------------------------
# CopyImage plumbing
# --------------------------------------------------------------------------------------------

# The double's clock for copies (time.monotonic); tests may replace it.
_clock: Callable[[], float] = time.monotonic


@dataclass
class _CopyJob:
    """A pending copy: its image and snapshots, when it ends, and how (None: available)."""

    ami: Any
    backend: Any
    snapshots: list[Any]
    ready_at: float
    failure: dict[str, str] | None


@dataclass(frozen=True)
class _CopiedVolume:
    """What a copied snapshot reports of its volume (AWS: an arbitrary ID, the source's size)."""

    size: int
    id: str = COPIED_VOLUME_ID


@dataclass(frozen=True)
class _CopyRequest:
    source_image_id: str
    source_region: str
    name: str
    description: str | None
    encrypted: bool
    kms_key_id: str | None
    copy_tags: bool
    tags: Mapping[str, Mapping[str, str]]  # resource type (image, snapshot) → tags
    client_token: str | None

    @property
    def fingerprint(self) -> str:
        """Every parameter but the client token, to compare a retry with the first call."""
        values = [
            self.source_image_id,
            self.source_region,
            self.name,
            self.description,
            self.encrypted,
            self.kms_key_id,
            self.copy_tags,
            {kind: dict(tags) for kind, tags in self.tags.items()},
        ]
        return json.dumps(values, sort_keys=True)


# Pending copies by image ID; settled (made available or failed) once their time has come.
_copy_jobs: dict[str, _CopyJob] = {}
# CopyImage client tokens: (account, region, token) → (request fingerprint, image ID).
_copy_tokens: dict[tuple[str, str, str], tuple[str, str]] = {}

_COPY_SOURCE_KEY_FAILURE = {
    "Code": "Client.InternalError",
    "Message": COPY_KEY_NOT_ACCESSIBLE_MESSAGE,
}
_COPY_KEY_ID_FAILURE = {"Code": "Client.InternalError", "Message": COPY_INTERNAL_ERROR_MESSAGE}
_COPY_INJECTED_FAILURE = {"Code": "Server.InternalError", "Message": COPY_INTERNAL_ERROR_MESSAGE}


def _copy_request(request: Any) -> _CopyRequest:
    token = request._get_param("ClientToken") or None  # an empty token is no token
    if token is not None and (
        len(str(token)) > MAX_CLIENT_TOKEN_LENGTH or not str(token).isascii()
    ):
        raise EC2ClientError(
            "InvalidParameterValue",
            f"Value ({token}) for parameter clientToken is invalid. It must be at most "
            f"{MAX_CLIENT_TOKEN_LENGTH} ASCII characters.",
        )
    encrypted = bool(request._get_bool_param("Encrypted", False))
    kms_key_id = request._get_param("KmsKeyId") or None
    if kms_key_id and not encrypted:
        raise InvalidParameterDependency("KmsKeyId", "Encrypted")
    return _CopyRequest(
        source_image_id=str(request._get_param("SourceImageId") or ""),
        source_region=str(request._get_param("SourceRegion") or ""),
        name=str(request._get_param("Name") or ""),
        description=request._get_param("Description"),
        encrypted=encrypted,
        kms_key_id=kms_key_id,
        copy_tags=bool(request._get_bool_param("CopyImageTags", False)),
        tags=_copy_tag_specifications(request._get_param("TagSpecifications") or []),
        client_token=None if token is None else str(token),
    )


def _copy_tag_specifications(specifications: list[Any]) -> dict[str, dict[str, str]]:
    tags: dict[str, dict[str, str]] = {"image": {}, "snapshot": {}}
    for specification in specifications:
        kind = str(specification.get("ResourceType", ""))
        if kind not in tags:
            raise InvalidTaggableResourceType(kind)
        tags[kind].update({t["Key"]: t.get("Value", "") for t in specification.get("Tags", [])})
    return tags


def _earlier_copy(backend: Any, request: _CopyRequest) -> str | None:
    """The image a CopyImage with this client token made before, if any."""
    if request.client_token is None:
        return None
    earlier = _copy_tokens.get((backend.account_id, backend.region_name, request.client_token))
    if earlier is None:
        return None
    fingerprint, image_id = earlier
    if fingerprint != request.fingerprint:
        raise EC2ClientError("IdempotentParameterMismatch", IDEMPOTENT_MISMATCH_MESSAGE)
    return image_id


def _ec2_backend_or_none(account_id: str, region: str) -> Any:
    per_region = dict.get(ec2_backends, account_id)  # dict.get: never creates a backend
    return None if per_region is None else dict.get(per_region, region)


def _image_snapshot_ids(ami: Any) -> list[str]:
    return [
        str(m["Ebs"]["SnapshotId"])
        for m in ami.block_device_mappings
        if m.get("Ebs", {}).get("SnapshotId")
    ]


def _copy_source(caller: str, request: _CopyRequest) -> Any:
    """The image to copy, if the caller may copy it (else the error AWS answers)."""
    ami_id, region = request.source_image_id, request.source_region
    if not ami_id.startswith("ami-"):
        raise MalformedAMIIdError([ami_id])
    ami = _image_in(caller, region, ami_id)
    if ami is None:
        ami = _find_image(ami_id, region)
    launchable = ami is not None and (
        ami.owner_id == caller
        or any(p.get("UserId") == caller or p.get("Group") == "all" for p in ami.launch_permissions)
    )
    if not launchable:
        raise InvalidAMIIdError(ami_id)
    if ami.state != "available":
        raise EC2ClientError(
            "IncorrectState", f"The image '{ami_id}' is not in the 'available' state ({ami.state})."
        )
    if ami.owner_id != caller:
        _check_copy_storage(ami, caller)
    return ami


def _check_copy_storage(ami: Any, caller: str) -> None:
    snapshots = ami.ec2_backend.snapshots
    for snapshot_id in _image_snapshot_ids(ami):
        snapshot = snapshots.get(snapshot_id)
        if snapshot is None or not (
            caller in snapshot.create_volume_permission_userids
            or "all" in snapshot.create_volume_permission_groups
        ):
            raise EC2ClientError("InvalidRequest", COPY_STORAGE_DENIED_MESSAGE)


def _check_pending_copies(backend: Any) -> None:
    limit = _copy_settings.max_pending
    pending = sum(1 for job in _copy_jobs.values() if job.backend is backend)
    if limit and pending >= limit:
        raise EC2ClientError(
            "ResourceLimitExceeded",
            f"Too many image copies in progress. The limit is {limit} for this destination region.",
        )


def _settle_copies() -> None:
    """Finish every pending copy whose copy time is over."""
    now = _clock()
    for ami_id, job in list(_copy_jobs.items()):
        if job.ready_at <= now:
            del _copy_jobs[ami_id]
            _finish_copy(job)


def _finish_copy(job: _CopyJob) -> None:
    if job.failure is None:
        job.ami.state = "available"
        for snapshot in job.snapshots:
            snapshot.status = "completed"
        return
    job.ami.state = "failed"
    job.ami.state_reason = dict(job.failure)
    for snapshot in job.snapshots:
        snapshot.status = "error"
        snapshot.status_message = job.failure["Message"]


def _start_copy(backend: Any, source: Any, request: _CopyRequest) -> Any:
    """The new image (pending) and its new snapshots, registered as a pending copy."""
    ami: Any = Ami(
        backend,
        random_ami_id(),
        source_ami=source,
        name=request.name,
        description=request.description,
    )
    backend.snapshots.pop(ami.ebs_snapshot.id, None)  # drop moto's auto-created snapshot
    ami.root_device_name = source.root_device_name
    ami.root_device_type = source.root_device_type
    ami.boot_mode = source.boot_mode
    ami.source_image_id = source.id
    ami.source_image_region = request.source_region
    ami.state = "pending"
    mappings, snapshots, failure = _copy_mappings(backend, ami.id, source, request)
    ami.amishare_block_device_mappings = mappings
    ami.add_tags(_copied_image_tags(backend.account_id, source, request))
    backend.amis[ami.id] = ami
    _image_owners[ami.id] = backend.account_id
    settings = _copy_settings
    failure = failure or _injected_copy_failure(backend.account_id, request.name)
    _copy_jobs[ami.id] = _CopyJob(ami, backend, snapshots, _clock() + settings.seconds, failure)
    if settings.seconds <= 0:
        _settle_copies()
    return ami


def _copy_mappings(
    backend: Any, ami_id: str, source: Any, request: _CopyRequest
) -> tuple[list[dict[str, Any]], list[Any], dict[str, str] | None]:
    """The copy's mappings, its new snapshots, and the first key problem that fails it."""
    same_place = (
        source.owner_id == backend.account_id and request.source_region == backend.region_name
    )
    mappings: list[dict[str, Any]] = []
    snapshots: list[Any] = []
    failure: dict[str, str] | None = None
    source_snapshots = source.ec2_backend.snapshots
    for mapping in source.block_device_mappings:
        ebs = dict(mapping.get("Ebs") or {})
        source_snapshot = source_snapshots.get(ebs.get("SnapshotId") or "")
        if source_snapshot is None:
            mappings.append(dict(mapping))
            continue
        key_arn, problem = _copy_key(backend, request, source_snapshot, same_place)
        failure = failure or problem
        snapshot = _copied_snapshot(backend, ami_id, source.id, source_snapshot, key_arn)
        snapshot.add_tags(dict(request.tags.get("snapshot", {})))
        snapshots.append(snapshot)
        ebs.update(SnapshotId=snapshot.id, Encrypted=bool(snapshot.encrypted))
        mappings.append({**mapping, "Ebs": ebs})
    return mappings, snapshots, failure


def _copy_key(
    backend: Any, request: _CopyRequest, snapshot: Any, same_place: bool
) -> tuple[str | None, dict[str, str] | None]:
    """The key the copy of `snapshot` is encrypted with (None: unencrypted), and the failure
    it causes, if any (the source key first)."""
    problem = None if _source_key_usable(snapshot, backend.account_id) else _COPY_SOURCE_KEY_FAILURE
    if request.kms_key_id:
        key_arn = _destination_key_arn(backend, request.kms_key_id)
        if key_arn is None:
            return request.kms_key_id, problem or _COPY_KEY_ID_FAILURE
        return key_arn, problem
    if same_place and snapshot.encrypted and not request.encrypted:
        return str(snapshot.kms_key_id), problem
    if request.encrypted or snapshot.encrypted:
        return _default_ebs_key(backend), problem
    return None, problem


def _default_ebs_key(backend: Any) -> str:
    """The account's default EBS key in its Region (alias/aws/ebs, created if missing)."""
    return str(backend.default_kms_key_id or backend._create_default_encryption_key())


def _key_or_none(account_id: str, region: str, key_ref: str) -> Any:
    try:
        return _find_key(region, account_id, key_ref)
    except JsonRESTError:
        return None


def _source_key_usable(snapshot: Any, caller: str) -> bool:
    """The snapshot is unencrypted, or its key is enabled and (another account's) lets the
    caller DescribeKey, Decrypt and CreateGrant."""
    if not snapshot.encrypted:
        return True
    owner_backend = snapshot.ec2_backend
    key = _key_or_none(
        owner_backend.account_id, owner_backend.region_name, str(snapshot.kms_key_id or "")
    )
    if key is None or key.key_state != "Enabled":
        return False
    if owner_backend.account_id == caller:
        return True
    return all(_copy_allows(key, caller, operation) for operation in COPY_KEY_OPERATIONS)


def _copy_allows(key: Any, caller: str, operation: str) -> bool:
    """KMS's answer for a call EBS makes for the caller during a copy: its CreateGrant is for an
    AWS resource, so a statement conditioned only on kms:GrantIsForAWSResource counts."""
    policy = key.policy if operation != "CreateGrant" else _for_aws_resource(key.policy)
    return _policy_allows(policy, caller, f"kms:{operation}") or _grant_allows(
        key, caller, operation
    )


def _for_aws_resource(policy: str) -> str:
    """The policy with the condition `kms:GrantIsForAWSResource` true dropped where it is a
    statement's only condition."""
    try:
        document = json.loads(policy)
        statements = _statements(policy)
    except ValueError:
        return policy
    statements = [
        {k: v for k, v in s.items() if k != "Condition"}
        if _only_for_aws_resource(s.get("Condition"))
        else s
        for s in statements
    ]
    return json.dumps({**document, "Statement": statements})


def _only_for_aws_resource(condition: object) -> bool:
    if not isinstance(condition, dict) or list(condition) != ["Bool"]:
        return False
    tests = condition["Bool"]
    if not isinstance(tests, dict) or len(tests) != 1:
        return False
    ((name, value),) = tests.items()
    values = [str(v).lower() for v in _as_list(value)]
    return str(name).lower() == "kms:grantisforawsresource" and values == ["true"]


def _destination_key_arn(backend: Any, key_ref: str) -> str | None:
    """The ARN of the KmsKeyId key if the copy can use it: the caller's, in its Region, enabled,
    symmetric."""
    match = _KMS_ARN.fullmatch(key_ref)
    if key_ref.startswith("arn:") and (
        match is None
        or (match.group(1), match.group(2)) != (backend.region_name, backend.account_id)
    ):
        return None
    kms_backends[backend.account_id][backend.region_name]  # the caller's own: may be created
    key = _key_or_none(backend.account_id, backend.region_name, key_ref)
    usable = (
        key is not None
        and key.key_state == "Enabled"
        and (key.key_usage or "ENCRYPT_DECRYPT") == "ENCRYPT_DECRYPT"
        and key.key_spec == "SYMMETRIC_DEFAULT"
    )
    return str(key.arn) if usable else None


def _copied_snapshot(
    backend: Any, ami_id: str, source_ami_id: str, source: Any, key_arn: str | None
) -> Any:
    created_ms = int(time.time() * 1000)
    snapshot = Snapshot(
        backend,
        random_snapshot_id(),
        _CopiedVolume(int(source.volume_size)),
        f"Copied for DestinationAmi {ami_id} from SourceAmi {source_ami_id} for SourceSnapshot "
        f"{source.id}. Task created on {created_ms:,}.",
        encrypted=key_arn is not None,
        kms_key_id=key_arn,
        owner_id=backend.account_id,
        from_ami=ami_id,
    )
    snapshot.status = "pending"
    backend.snapshots[snapshot.id] = snapshot
    return snapshot


def _copied_image_tags(caller: str, source: Any, request: _CopyRequest) -> dict[str, str]:
    tags: dict[str, str] = {}
    if request.copy_tags:
        seen_in = (
            source.ec2_backend
            if source.owner_id == caller
            else _ec2_backend_or_none(caller, request.source_region)
        )
        seen = {} if seen_in is None else dict(seen_in.tags.get(source.id, {}))
        tags.update({k: v for k, v in seen.items() if not k.startswith("aws:")})
    tags.update(request.tags.get("image", {}))
    return tags


def _injected_copy_failure(account_id: str, name: str) -> dict[str, str] | None:
    settings = _copy_settings
    chosen = (
        account_id in settings.fail_accounts
        or any(fnmatch.fnmatchcase(name, pattern) for pattern in settings.fail_names)
        or (settings.fail_rate > 0 and _copy_random.random() < settings.fail_rate)
    )
    return dict(_COPY_INJECTED_FAILURE) if chosen else None


def _delete_image_snapshots(backend: Any, snapshot_ids: list[str]) -> list[dict[str, str]]:
    """DeleteAssociatedSnapshots: delete those no other image of the account uses."""
    in_use = {s for other in backend.amis.values() for s in _image_snapshot_ids(other)}
    results = []
    for snapshot_id in snapshot_ids:
        if snapshot_id in in_use:
            results.append({"SnapshotId": snapshot_id, "ReturnCode": "skipped"})
        elif backend.snapshots.pop(snapshot_id, None) is not None:
            results.append({"SnapshotId": snapshot_id, "ReturnCode": "success"})
    return results


# --------------------------------------------------------------------------------------------
# The patches: one function each.
# --------------------------------------------------------------------------------------------


# AWS: RegisterImage honours BlockDeviceMappings; the AMI points at the given (encrypted)
# snapshots, and an image without an EBS root device is instance-store-backed.
def _register_image(self: Any) -> ActionResult:
    self.error_on_dryrun()
    for requested in self._get_param("BlockDeviceMappings", []):
        _mapping(self.ec2_backend, requested)  # unknown snapshots fail before anything changes
    ami = self.ec2_backend.register_image(
        self._get_param("Name"), self._get_param("Description", "")
    )
    ami.architecture = self._get_param("Architecture") or ami.architecture or "x86_64"
    ami.virtualization_type = self._get_param("VirtualizationType") or "hvm"
    _shape_registered_image(self.ec2_backend, ami, self)
    ami.add_tags(self._parse_tag_specification().get("image", {}))
    return ActionResult({"ImageId": ami.id})


# AWS: DescribeImages reports an image's real block device mappings (snapshot, size, Encrypted).
def _block_device_mappings(self: Any) -> list[dict[str, Any]]:
    registered = getattr(self, "amishare_block_device_mappings", None)
    if registered is not None:
        return list(registered)
    return list(_original(Ami, "block_device_mappings").fget(self))


# AWS: a snapshot of an encrypted volume keeps the volume's KMS key, reported as the key ARN.
def _create_snapshot(self: Any, volume_id: str, *args: Any, **kwargs: Any) -> Any:
    snapshot = _original(EBSBackend, "create_snapshot")(self, volume_id, *args, **kwargs)
    volume = snapshot.volume
    if volume.encrypted and volume.kms_key_id:
        snapshot.kms_key_id = _key_arn(self.account_id, self.region_name, volume.kms_key_id)
    return snapshot


# AWS: keys behind the reserved `alias/aws/*` aliases (e.g. aws/ebs) are AWS managed keys.
def _create_alias(self: Any, target_key_id: str, alias_name: str) -> Any:
    alias = _original(KmsBackend, "create_alias")(self, target_key_id, alias_name)
    if alias_name.startswith("alias/aws/"):
        self.keys[self.get_key_id(target_key_id)].key_manager = "AWS"
    return alias


# AWS: DescribeImages also returns other accounts' images whose launch permissions name the caller.
def _describe_images(self: Any, *args: Any, **kwargs: Any) -> Any:
    ami_ids = kwargs.get("ami_ids", args[0] if args else None)
    shared = _images_shared_with(self.account_id, self.region_name, only=ami_ids or None)
    if not shared:
        return _original(AmiBackend, "describe_images")(self, *args, **kwargs)
    view = _ImageView(self, {**shared, **self.amis})
    return _original(AmiBackend, "describe_images")(view, *args, **kwargs)


class _ImageView:
    """What moto's describe_images reads from a backend, with images shared with the caller."""

    def __init__(self, backend: Any, amis: dict[str, Any]) -> None:
        self.amis = amis
        self.deleted_amis: list[str] = backend.deleted_amis
        self.account_id: str = backend.account_id


# AWS: only the owner may change an AMI's launch permissions, and accounts must exist.
def _modify_image_attribute(
    self: Any,
    ami_id: str,
    launch_permissions_to_add: list[dict[str, str]],
    launch_permissions_to_remove: list[dict[str, str]],
) -> None:
    _own_image(self, ami_id)
    _check_user_ids((p["UserId"] for p in launch_permissions_to_add if "UserId" in p), True)
    _original(AmiBackend, "modify_image_attribute")(
        self, ami_id, launch_permissions_to_add, launch_permissions_to_remove
    )


# AWS: DescribeKey on another account's key ARN works only if its key policy or a grant allows it.
def _describe_key(self: Any) -> str:
    key_ref = str(self._get_param("KeyId"))
    location = _foreign_key_location(key_ref, self.current_account)
    if location is None:
        return str(_original(KmsResponse, "describe_key")(self))
    key = _find_key(*location, key_ref)
    _require_access(self, key, "kms:DescribeKey")
    return json.dumps(key.to_dict())


# AWS: ModifySnapshotAttribute takes both request forms, validates account IDs, caps changes at 500.
def _modify_snapshot_attribute(self: Any) -> EmptyResult:
    snapshot = self.ec2_backend.get_snapshot(self._get_param("SnapshotId"))
    operation, users, groups = _snapshot_changes(self)
    self.error_on_dryrun()
    _check_snapshot_share(snapshot, operation, users, groups)
    change = (
        self.ec2_backend.add_create_volume_permission
        if operation == "add"
        else self.ec2_backend.remove_create_volume_permission
    )
    change(snapshot.id, user_ids=users, groups=groups)
    return EmptyResult()


# AWS: a key policy naming a principal of a non-existent account, or over 32 KB, is refused.
def _put_key_policy(self: Any, key_id: str, policy: str) -> None:
    _check_key_policy(policy)
    _original(KmsBackend, "put_key_policy")(self, key_id, policy)


# AWS: CreateKey validates its key policy like PutKeyPolicy does.
def _create_key(self: Any, policy: str | None, *args: Any, **kwargs: Any) -> Any:
    if policy:
        _check_key_policy(policy)
    return _original(KmsBackend, "create_key")(self, policy, *args, **kwargs)


# AWS: CreateGrant refuses grantee/retiring principals that do not exist (InvalidArnException).
def _create_grant(self: Any, key_id: str, grantee_principal: str, *args: Any, **kwargs: Any) -> Any:
    retiring = kwargs.get("retiring_principal")
    for principal in [grantee_principal, *([retiring] if retiring else [])]:
        invalid = _kms_error("InvalidArnException", f"Invalid principal: {principal}")
        _check_principals_exist([principal], invalid)
    return _original(KmsBackend, "create_grant")(self, key_id, grantee_principal, *args, **kwargs)


# AWS: CreateGrant retried with the Name and parameters of an existing grant returns that grant.
def _add_grant(
    self: Any,
    name: str,
    grantee_principal: str,
    operations: list[str],
    constraints: dict[str, Any],
    retiring_principal: str,
) -> Any:
    wanted = (name, grantee_principal, sorted(operations or []), constraints, retiring_principal)
    for grant in list(self.grants.values()):
        # Names first: comparing every grant's full parameters made each CreateGrant cost more
        # the more grants the key had.
        if name and grant.name == name and _grant_parameters(grant) == wanted:
            return grant
    return _original(Key, "add_grant")(
        self, name, grantee_principal, operations, constraints, retiring_principal
    )


# The order grants were created in, across keys: ListGrants pages by it (its Marker).
_grant_order = itertools.count(1)


# AWS: a grant has a CreationDate and an IssuingAccount (set by CreateGrant: the caller's account).
def _new_grant(self: Any, *args: Any, **kwargs: Any) -> None:
    _original(Grant, "__init__")(self, *args, **kwargs)
    self.creation_date = unix_time()
    self.issuing_account = None
    self.amishare_order = next(_grant_order)


# AWS: grant list entries (ListGrants, ListRetirableGrants) carry IssuingAccount and CreationDate.
def _grant_to_json(self: Any) -> dict[str, Any]:
    entry = dict(_original(Grant, "to_json")(self))
    if getattr(self, "issuing_account", None):
        entry["IssuingAccount"] = f"arn:aws:iam::{self.issuing_account}:root"
    if getattr(self, "creation_date", None) is not None:
        entry["CreationDate"] = self.creation_date
    return entry


# AWS: CreateGrant on another account's key ARN needs the key policy or a grant to allow the
# caller kms:CreateGrant (a grant: only its own operations); the caller's account issues the grant.
def _create_grant_request(self: Any) -> str:
    key_ref = str(self._get_param("KeyId"))
    caller = self.current_account
    location = _foreign_key_location(key_ref, caller)
    region, owner = location or (self.region, caller)
    key = _find_key(region, owner, key_ref)
    operations = list(self._get_param("Operations") or [])
    if location is not None:
        _require_grant_access(self, key, operations)
    grant_id, grant_token = kms_backends[owner][region].create_grant(
        key.id,
        self._get_param("GranteePrincipal"),
        operations,
        self._get_param("Name"),
        constraints=self._get_param("Constraints"),
        retiring_principal=self._get_param("RetiringPrincipal"),
    )
    grant = key.grants[grant_id]
    if grant.issuing_account is None:  # a new grant, not the one a retry with its Name returns
        grant.issuing_account = caller
    return json.dumps({"GrantId": grant_id, "GrantToken": grant_token})


# AWS: ListGrants filters by GranteePrincipal and pages with Limit (1-100, default 50) and Marker.
def _list_grants(self: Any) -> str:
    key_ref = str(self._get_param("KeyId"))
    location = _foreign_key_location(key_ref, self.current_account)
    region, owner = location or (self.region, self.current_account)
    key = _find_key(region, owner, key_ref)
    if location is not None:
        _require_access(self, key, "kms:ListGrants")
    grant_id, grantee = self._get_param("GrantId"), self._get_param("GranteePrincipal")
    grants = [
        grant
        for grant in list(key.grants.values())
        if (not grant_id or grant.id == grant_id)
        and (not grantee or grant.grantee_principal == grantee)
    ]
    page, next_marker = _grants_page(grants, self._get_param("Limit"), self._get_param("Marker"))
    answer: dict[str, Any] = {"Grants": [g.to_json() for g in page], "Truncated": bool(next_marker)}
    if next_marker:
        answer["NextMarker"] = next_marker
    return json.dumps(answer)


# AWS: PutKeyPolicy refuses (unless BypassPolicyLockoutSafetyCheck) a policy that would not let
# the caller call PutKeyPolicy again.
def _put_key_policy_request(self: Any) -> str:
    policy = self._get_param("Policy")
    if not self._get_param("BypassPolicyLockoutSafetyCheck") and isinstance(policy, str):
        self._validate_cmk_id(str(self._get_param("KeyId")))
        _check_key_policy(policy)  # too large or invalid principals: refused as such first
        caller, role_arn = self.current_account, _caller_role_arn(self)
        if not _policy_allows(policy, caller, "kms:PutKeyPolicy", role_arn):
            raise _kms_error("MalformedPolicyDocumentException", LOCKOUT_MESSAGE)
    return str(_original(KmsResponse, "put_key_policy")(self))


# AWS: a Deny statement of a key policy applies only to the principals it names (moto applies
# every Deny to every caller).
def _validate_key_policy(self: Any, key_id: str, action: str) -> None:
    key = self.kms_backend.describe_key(self.kms_backend.get_key_id(key_id))
    try:
        statements = _statements(key.policy)
    except (ValueError, TypeError):
        return
    caller, role_arn = self.current_account, _caller_role_arn(self)
    for statement in statements:
        denies = str(statement.get("Effect", "")).lower() == "deny"
        applies = _statement_names_account(statement, caller, role_arn)
        if denies and applies and _statement_has_action(statement, action):
            raise _kms_error(
                "AccessDeniedException", f"{action} is denied by the key policy of {key.arn}"
            )


# AWS: AssumeRole takes RoleSessionName and SourceIdentity of 2-64 characters of [\w+=,.@-] and
# answers with the SourceIdentity.
def _assume_role(self: Any) -> ActionResult:
    source_identity = self._get_param("SourceIdentity")
    for name, value in (
        ("roleSessionName", self._get_param("RoleSessionName")),
        ("sourceIdentity", source_identity),
    ):
        if value is not None and not _STS_NAME.fullmatch(str(value)):
            raise STSValidationError(
                f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]{2,64}"
            )
    answer: ActionResult = _original(TokenResponse, "assume_role")(self)
    result: Any = answer.result
    if source_identity is not None:
        result["SourceIdentity"] = source_identity
    return answer


# AWS: DescribeImageAttribute on an unknown AMI is InvalidAMIID.NotFound (400), not a crash.
def _describe_image_attribute(self: Any, ami_id: str, attribute_name: str) -> Any:
    _own_image(self, ami_id)
    return _original(AmiBackend, "describe_image_attribute")(self, ami_id, attribute_name)


# AWS: ResetImageAttribute(launchPermission) removes every launch permission of the AMI.
def _reset_image_attribute(self: Any) -> EmptyResult:
    ami = _own_image(self.ec2_backend, self._get_param("ImageId"))
    attribute = self._get_param("Attribute")
    self.error_on_dryrun()
    if attribute != "launchPermission":
        raise _invalid_attribute(attribute)
    ami.launch_permissions.clear()
    return EmptyResult()


# AWS: ResetSnapshotAttribute(createVolumePermission) removes every create-volume permission.
def _reset_snapshot_attribute(self: Any) -> EmptyResult:
    snapshot = self.ec2_backend.get_snapshot(self._get_param("SnapshotId"))
    attribute = self._get_param("Attribute")
    self.error_on_dryrun()
    if attribute != "createVolumePermission":
        raise _invalid_attribute(attribute)
    snapshot.create_volume_permission_userids.clear()
    snapshot.create_volume_permission_groups.clear()
    return EmptyResult()


# AWS: CopyImage is called by the account that will own the copy, in its Region: the source
# image must be its own or shared with it (snapshots and keys too); the copy has new snapshots
# under the chosen key, is pending, then available or failed; ClientToken makes it idempotent.
def _copy_image(self: Any) -> ActionResult:
    request = _copy_request(self)
    self.error_on_dryrun()
    backend = self.ec2_backend
    _settle_copies()
    earlier = _earlier_copy(backend, request)
    if earlier is not None:
        return ActionResult({"ImageId": earlier})
    source = _copy_source(backend.account_id, request)
    _check_pending_copies(backend)
    ami = _start_copy(backend, source, request)
    if request.client_token is not None:
        token = (backend.account_id, backend.region_name, request.client_token)
        _copy_tokens[token] = (request.fingerprint, ami.id)
    return ActionResult({"ImageId": ami.id})


# AWS: DescribeImages shows a copy pending until its copy time is over, then available or failed.
def _describe_images_request(self: Any) -> ActionResult:
    _settle_copies()
    answer: ActionResult = _original(AmisResponse, "describe_images")(self)
    return answer


# AWS: DescribeSnapshots shows a copy's snapshots pending, then completed (or error, and why).
def _describe_snapshots(self: Any, *args: Any, **kwargs: Any) -> Any:
    _settle_copies()
    return _original(EBSBackend, "describe_snapshots")(self, *args, **kwargs)


# AWS: DeregisterImage of a pending copy stops it (its unfinished snapshots go); with
# DeleteAssociatedSnapshots it deletes the image's snapshots that no other image uses.
def _deregister_image(self: Any) -> ActionResult:
    ami_id = self._get_param("ImageId")
    delete_snapshots = bool(self._get_bool_param("DeleteAssociatedSnapshots", False))
    self.error_on_dryrun()
    backend = self.ec2_backend
    _settle_copies()
    ami = backend.amis.get(ami_id)
    snapshot_ids = [] if ami is None else _image_snapshot_ids(ami)
    backend.deregister_image(ami_id)  # unknown or already deregistered: moto's errors
    job = _copy_jobs.pop(ami_id, None)
    if job is not None:
        for snapshot in job.snapshots:
            backend.snapshots.pop(snapshot.id, None)
    answer: dict[str, Any] = {"Return": True}
    if delete_snapshots:
        answer["DeleteSnapshotResults"] = (
            [{"SnapshotId": s.id, "ReturnCode": "success"} for s in job.snapshots]
            if job is not None
            else _delete_image_snapshots(backend, snapshot_ids)
        )
    return ActionResult(answer)


# Not an AWS behaviour but the double's speed: moto finds the account of an access key by
# looking in every account's IAM backend in every partition (creating the missing ones), twice
# per request. With the 1,000 accounts of a fan-out run that scan was most of each call.
_key_accounts: dict[str, str] = {}
# When STS issued each of its access keys (time.monotonic()): the double's expired-credentials
# fault (aws_double's credential_lifetime_seconds) reads it.
_key_issued: dict[str, float] = {}
_scan_for_account: Callable[[str], str] = iam_models.get_account_id_from
_list_method_names: Callable[[Any], list[str]] = method_names_from_class


def _holds_access_key(account_id: str, access_key: str) -> bool:
    per_partition = dict.get(iam_models.iam_backends, account_id)  # never creates a backend
    if per_partition is None:
        return False
    for partition in PARTITION_NAMES:
        backend = dict.get(per_partition, partition)
        if backend is not None and access_key in backend.access_keys:
            return True
    return False


# Speed (see above), and the issue time of STS credentials, after which AWS lets them expire.
def _create_access_key(self: Any, role: str) -> tuple[str, Any]:
    account_id, access_key = _original(STSBackend, "_create_access_key")(self, role)
    _key_accounts[str(access_key.access_key_id)] = account_id
    _key_issued[str(access_key.access_key_id)] = time.monotonic()
    return account_id, access_key


# Not an AWS behaviour but the double's speed: moto checks that an account's backend exists by
# listing every account under one process-wide lock, several times per request.
def _create_account_specific_backend(self: Any, account_id: str) -> None:
    if dict.__contains__(self, account_id):
        return
    _original(BackendDict, "_create_account_specific_backend")(self, account_id)


# Not an AWS behaviour but the double's speed: moto lists a response class's methods with
# inspect.getmembers on every request; classes do not change, so the list is kept per class.
_method_names: dict[type, list[str]] = {}


def _method_names_from_class(clazz: Any) -> list[str]:
    names = _method_names.get(clazz)
    if names is None:
        names = _method_names[clazz] = _list_method_names(clazz)
    return names


# Not an AWS behaviour but the double's speed: moto builds an RSA private key for every KMS key,
# symmetric ones too (60 ms of CPU each: every destination's default EBS key made by a copy).
_build_private_key: Callable[[str], Any] = getattr(kms_models, "generate_private_key")  # noqa: B009


class _PrivateKeyOnUse:
    """A KMS key's private key, built the first time it is used (asymmetric keys only use it)."""

    def __init__(self, key_spec: str) -> None:
        self._key_spec = key_spec
        self._key: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._key is None:
            self._key = _build_private_key(self._key_spec)
        return getattr(self._key, name)


def _private_key_on_use(key_spec: str) -> Any:
    return _PrivateKeyOnUse(key_spec)


def account_id_from(access_key: str) -> str:
    """The account an access key belongs to, as moto's get_account_id_from answers, remembered.

    Keys STS issues are recorded as they are issued; others are found by moto's scan once. An
    account found is checked again on every use (the key may have been deleted); a key no
    account holds stays with moto's default account: keys are random and never reused, so one
    unknown when first seen does not become known later.
    """
    account = _key_accounts.get(access_key)
    if account is not None and (
        account == DEFAULT_ACCOUNT_ID or _holds_access_key(account, access_key)
    ):
        return account
    account = _scan_for_account(access_key)
    _key_accounts[access_key] = account
    return account


_PATCHES: tuple[tuple[type, str, Callable[..., Any]], ...] = (
    (AmisResponse, "register_image", _register_image),
    (Ami, "block_device_mappings", _block_device_mappings),
    (EBSBackend, "create_snapshot", _create_snapshot),
    (KmsBackend, "create_alias", _create_alias),
    (AmiBackend, "describe_images", _describe_images),
    (AmiBackend, "modify_image_attribute", _modify_image_attribute),
    (KmsResponse, "describe_key", _describe_key),
    (ElasticBlockStore, "modify_snapshot_attribute", _modify_snapshot_attribute),
    (KmsBackend, "put_key_policy", _put_key_policy),
    (KmsBackend, "create_key", _create_key),
    (KmsBackend, "create_grant", _create_grant),
    (Key, "add_grant", _add_grant),
    (Grant, "__init__", _new_grant),
    (Grant, "to_json", _grant_to_json),
    (KmsResponse, "create_grant", _create_grant_request),
    (KmsResponse, "list_grants", _list_grants),
    (KmsResponse, "put_key_policy", _put_key_policy_request),
    (KmsResponse, "_validate_key_policy", _validate_key_policy),
    (TokenResponse, "assume_role", _assume_role),
    (AmiBackend, "describe_image_attribute", _describe_image_attribute),
    (AmisResponse, "reset_image_attribute", _reset_image_attribute),
    (ElasticBlockStore, "reset_snapshot_attribute", _reset_snapshot_attribute),
    (STSBackend, "_create_access_key", _create_access_key),
    (BackendDict, "_create_account_specific_backend", _create_account_specific_backend),
    (AmisResponse, "copy_image", _copy_image),
    (AmisResponse, "describe_images", _describe_images_request),
    (EBSBackend, "describe_snapshots", _describe_snapshots),
    (AmisResponse, "deregister_image", _deregister_image),
)


def _check_moto_version() -> None:
    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"app.sandbox.moto_ext targets moto=={MOTO_VERSION} exactly, but moto "
            f"{moto.__version__} is installed: re-check every patch before changing the pin."
        )


def _apply(owner: type, name: str, patch: Callable[..., Any]) -> None:
    _originals[(owner, name)] = owner.__dict__[name]
    replacement: Any = property(patch) if isinstance(owner.__dict__[name], property) else patch
    setattr(owner, name, replacement)


def install() -> None:
    """Apply every patch to moto (safe to call more than once)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _check_moto_version()
        if os.environ.get(UNKNOWN_ACCOUNTS_ENV):
            set_unknown_accounts(_accounts_from_env())
        for owner, name, patch in _PATCHES:
            _apply(owner, name, patch)
        iam_models.get_account_id_from = account_id_from  # read at call time by moto's responses
        setattr(kms_models, "generate_private_key", _private_key_on_use)  # noqa: B010
        # moto's responses module imported the function by name: replace that name.
        setattr(moto_responses, "method_names_from_class", _method_names_from_class)  # noqa: B010
        _installed = True
