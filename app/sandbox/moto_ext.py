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
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import moto
import moto.core.responses as moto_responses
import moto.iam.models as iam_models
from moto.core.base_backend import BackendDict
from moto.core.exceptions import JsonRESTError
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import method_names_from_class, unix_time
from moto.ec2.exceptions import (
    EC2ClientError,
    InvalidAMIAttributeItemValueError,
    InvalidAMIIdError,
    MalformedAMIIdError,
)
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
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
            if any(lp.get("UserId") == account_id for lp in ami.launch_permissions):
                found[ami.id] = ami
    return found


# Not an AWS behaviour but the double's speed: where each image ID was last found (owner,
# region), so that looking an image up by ID does not visit every account of a large run.
_image_owners: dict[str, str] = {}


def _named_images_shared_with(account_id: str, region: str, ami_ids: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ami_id in ami_ids:
        ami = _find_image(ami_id, region)
        if ami is None or _image_owners.get(ami_id) == account_id:
            continue
        if any(lp.get("UserId") == account_id for lp in ami.launch_permissions):
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
        # moto's responses module imported the function by name: replace that name.
        setattr(moto_responses, "method_names_from_class", _method_names_from_class)  # noqa: B010
        _installed = True
