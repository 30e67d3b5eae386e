"""The AwsGateway on aioboto3: real AWS, or moto / LocalStack behind `aws_endpoint_url`."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, cast

import aioboto3
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from app.aws.call_errors import AwsCallError, ErrorKind
from app.aws.credentials import Credentials, RoleCredentials, acting_as
from app.aws.gateway import (
    AwsGateway,
    Change,
    CopyRequest,
    DestinationAccount,
    GrantInfo,
    ImageInfo,
    KeyInfo,
    RoleSession,
    SnapshotInfo,
    SourceAccount,
)
from app.aws.role_clients import SharedRoleClients
from app.aws.sessions import (
    AccountClients,
    CallObserver,
    CallRecorder,
    client_config,
    role_arn,
)
from app.config import Settings
from app.domain.principals import Principal, account
from app.domain.regions import partition_of
from app.domain.types import PrincipalType

if TYPE_CHECKING:
    from types_aiobotocore_ec2 import EC2Client
    from types_aiobotocore_ec2.type_defs import ImageTypeDef, LaunchPermissionTypeDef
    from types_aiobotocore_kms import KMSClient
    from types_aiobotocore_kms.literals import GrantOperationType
    from types_aiobotocore_kms.type_defs import KeyMetadataTypeDef
    from types_aiobotocore_sts import STSClient
    from types_aiobotocore_sts.type_defs import AssumeRoleRequestTypeDef

# AWS rejects more than 500 createVolumePermission modifications in one call (docs/aws.md).
MAX_SNAPSHOT_PERMISSION_IDS = 500
# DescribeSnapshots has no documented ID limit; small chunks keep each answer small.
DESCRIBE_SNAPSHOTS_CHUNK = 100
KEY_POLICY_NAME = "default"
Operation = Literal["add", "remove"]
# What a destination needs to launch and to copy from a snapshot encrypted with the key.
GRANT_OPERATIONS: tuple[GrantOperationType, ...] = (
    "Decrypt",
    "DescribeKey",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "CreateGrant",
)
_LAUNCH_PERMISSION_FIELD = {
    PrincipalType.ACCOUNT: "UserId",
    PrincipalType.ORGANIZATION: "OrganizationArn",
    PrincipalType.ORGANIZATIONAL_UNIT: "OrganizationalUnitArn",
}


# Assumed roles remembered per (partition, account, role, session): the destinations of a few
# jobs running at once, in every Region of theirs.
ROLE_CACHE_SIZE = 8192
# A role session outside any job (none is made today; the name still says who acts).
DEFAULT_SESSION_NAME = "amishare"
# Connections per shared client (the service's own clients, the destination role clients); they
# open as needed, up to the destinations in flight in this process.
SHARED_POOL_CONNECTIONS = 512


class BotoAwsGateway:
    """One aioboto3 session for every account; clients per account context, STS shared."""

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        source_role_name: str | None = None,
        destination_role_name: str | None = None,
        external_id: str | None = None,
        default_region: str = "us-east-1",
        config: AioConfig | None = None,
        on_call: CallObserver | None = None,
        source_identity: bool = True,
    ) -> None:
        core = AioSession()
        self._session = aioboto3.Session(botocore_session=core)
        self._endpoint_url = endpoint_url
        self._source_role_name = source_role_name
        self._destination_role_name = destination_role_name
        self._external_id = external_id
        # SourceIdentity needs sts:SetSourceIdentity in the role's trust policy.
        self._source_identity = source_identity
        self._default_region = default_region
        # One STS client assumes every destination's role: a pool smaller than the destinations
        # in flight made them queue for a connection (64 by default: two waves at N = 100).
        self._config = config or client_config(max_pool_connections=SHARED_POOL_CONNECTIONS)
        self._calls = CallRecorder(on_call)
        # The service's own credentials: one set of clients per region for the gateway's life
        # (building an EC2 client costs tens of milliseconds of CPU; a job should not pay it).
        self._own_clients: dict[str, AccountClients] = {}
        self._own_account_id: str | None = None
        self._roles: OrderedDict[tuple[str, ...], asyncio.Future[RoleCredentials]] = OrderedDict()
        self._role_clients = SharedRoleClients(
            endpoint_url=endpoint_url,
            config=client_config(max_pool_connections=SHARED_POOL_CONNECTIONS),
            loader_from=core,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, on_call: CallObserver | None = None
    ) -> BotoAwsGateway:
        return cls(
            endpoint_url=settings.aws_endpoint_url,
            source_role_name=settings.source_role_name,
            destination_role_name=settings.destination_role_name,
            external_id=settings.external_id,
            default_region=settings.aws_default_region,
            on_call=on_call,
            source_identity=settings.set_source_identity,
        )

    def observe_calls(self, on_call: CallObserver) -> None:
        """Also report every AWS call (api, outcome, seconds) to `on_call`: the metrics."""
        self._calls.add_observer(on_call)

    async def own_account_id(self) -> str:
        if self._own_account_id is None:
            sts = await self._sts()
            with self._calls.call("sts:GetCallerIdentity"):
                identity = await sts.get_caller_identity()
            self._own_account_id = identity["Account"]
        return self._own_account_id

    @asynccontextmanager
    async def source(
        self, account_id: str, region: str, session: RoleSession | None = None
    ) -> AsyncIterator[SourceAccount]:
        if self._source_role_name:
            role = await self._role(account_id, region, self._source_role_name, session)
            with acting_as(role):
                yield BotoSourceAccount(
                    account_id, region, _RegionOf(self._role_clients, region), self._calls
                )
        else:
            # The service's own credentials act; the caller checks ownership.
            yield BotoSourceAccount(account_id, region, self._own(region), self._calls)

    @asynccontextmanager
    async def destination(
        self, account_id: str, region: str, session: RoleSession | None = None
    ) -> AsyncIterator[DestinationAccount]:
        if not self._destination_role_name:
            raise ValueError("AMISHARE_DESTINATION_ROLE_NAME is not set")
        role = await self._role(account_id, region, self._destination_role_name, session)
        # Shared clients signing as this role within this task: no client built per destination.
        with acting_as(role):
            yield BotoDestinationAccount(
                account_id, _RegionOf(self._role_clients, region), self._calls
            )

    async def warm_up(self) -> None:
        """Build the clients of the default region now (service models parsed, client classes
        made) rather than in the first job. No AWS call is made."""
        region = self._default_region
        await self._sts()
        await self._own(region).ec2()
        await self._own(region).kms()
        await self._role_clients.ec2(region)
        await self._role_clients.kms(region)

    async def aclose(self) -> None:
        """Closes every client the gateway opened."""
        for clients in list(self._own_clients.values()):
            await clients.aclose()
        await self._role_clients.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _own(self, region: str) -> AccountClients:
        clients = self._own_clients.get(region)
        if clients is None:
            clients = AccountClients(
                self._session,
                region=region,
                endpoint_url=self._endpoint_url,
                config=self._config,
                credentials=None,
            )
            self._own_clients[region] = clients
        return clients

    async def _sts(self) -> STSClient:
        # One STS client for the gateway's life: up to 1,000 AssumeRoles per job reuse its pool.
        return await self._own(self._default_region).sts()

    async def _role(
        self, account_id: str, region: str, role_name: str, session: RoleSession | None
    ) -> RoleCredentials:
        """The role's credentials, assumed again whenever they run out. Within one job's
        session a role is assumed once for all its Regions and steps (STS credentials are not
        regional): concurrent asks share one AssumeRole, a failed one is not remembered."""

        async def assume() -> Credentials:
            return await self._assume_role(account_id, region, role_name, session)

        async def first() -> RoleCredentials:
            return RoleCredentials(assume, await assume())

        if session is None:
            return await first()
        key = (partition_of(region), account_id, role_name, session.name)
        known = self._roles.get(key)
        if known is None or (known.done() and (known.cancelled() or known.exception())):
            known = asyncio.ensure_future(first())
            self._roles[key] = known
            while len(self._roles) > ROLE_CACHE_SIZE:
                self._roles.popitem(last=False)
        self._roles.move_to_end(key)
        return await asyncio.shield(known)

    async def _assume_role(
        self, account_id: str, region: str, role_name: str, session: RoleSession | None
    ) -> Credentials:
        """Credentials of `role_name` in `account_id`, always assumed from the service's own.
        The session name and SourceIdentity tie every call in CloudTrail to the job."""
        request: AssumeRoleRequestTypeDef = {
            "RoleArn": role_arn(account_id, role_name, partition_of(region)),
            "RoleSessionName": session.name if session else DEFAULT_SESSION_NAME,
        }
        if session is not None and session.source_identity and self._source_identity:
            request["SourceIdentity"] = session.source_identity
        if self._external_id:
            request["ExternalId"] = self._external_id
        sts = await self._sts()
        with self._calls.call("sts:AssumeRole"):
            response = await sts.assume_role(**request)
        issued = response["Credentials"]
        return Credentials(
            issued["AccessKeyId"],
            issued["SecretAccessKey"],
            issued["SessionToken"],
            issued.get("Expiration"),
        )


class _BotoImageCopier:
    """CopyImage and what goes with it, for the source and for destinations alike."""

    account_id: str
    _clients: _AccountClients
    _calls: CallRecorder

    async def copy_image(self, request: CopyRequest) -> tuple[str, Change]:
        ec2 = await self._clients.ec2()
        arguments: dict[str, Any] = {
            "SourceImageId": request.source_image_id,
            "SourceRegion": request.source_region,
            "Name": request.name,
            "ClientToken": request.client_token,
            "Encrypted": True,  # a copy of an encrypted image stays encrypted, under our key
        }
        if request.kms_key_id:
            arguments["KmsKeyId"] = request.kms_key_id
        if request.tags:
            tags = [{"Key": k, "Value": v} for k, v in sorted(request.tags.items())]
            arguments["TagSpecifications"] = [
                {"ResourceType": "image", "Tags": tags},
                {"ResourceType": "snapshot", "Tags": tags},
            ]
        with self._calls.call("ec2:CopyImage"):
            response = await ec2.copy_image(**arguments)
        image_id = response["ImageId"]
        change = Change(
            api="ec2:CopyImage",
            resource=image_id,
            principals=(self.account_id,),
            request_id=request_id(response),
            detail={
                "source_image_id": request.source_image_id,
                "source_region": request.source_region,
                "kms_key_id": request.kms_key_id,
                "client_token": request.client_token,
            },
        )
        return image_id, change

    async def own_image(self, image_id: str) -> ImageInfo | None:
        ec2 = await self._clients.ec2()
        try:
            with self._calls.call("ec2:DescribeImages"):
                response = await ec2.describe_images(
                    ImageIds=[image_id], Owners=["self"], IncludeDeprecated=True
                )
        except AwsCallError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        images = response.get("Images", [])
        return image_info(images[0]) if images else None

    async def images_tagged(self, key: str, value: str) -> list[ImageInfo]:
        ec2 = await self._clients.ec2()
        with self._calls.call("ec2:DescribeImages"):
            response = await ec2.describe_images(
                Owners=["self"], Filters=[{"Name": f"tag:{key}", "Values": [value]}]
            )
        return [image_info(image) for image in response.get("Images", [])]

    async def deregister_image(self, image_id: str) -> Change | None:
        ec2 = await self._clients.ec2()
        try:
            with self._calls.call("ec2:DeregisterImage"):
                response = await ec2.deregister_image(ImageId=image_id)
        except AwsCallError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return Change(
            api="ec2:DeregisterImage",
            resource=image_id,
            principals=(self.account_id,),
            request_id=request_id(response),
        )

    async def describe_own_key(self, key_id: str) -> KeyInfo | None:
        kms = await self._clients.kms()
        try:
            with self._calls.call("kms:DescribeKey"):
                response = await kms.describe_key(KeyId=key_id)
        except AwsCallError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return key_info(response["KeyMetadata"])


class BotoSourceAccount(_BotoImageCopier):
    """The account that owns the image, its snapshots and their keys, in one Region."""

    def __init__(
        self, account_id: str, region: str, clients: _AccountClients, calls: CallRecorder
    ) -> None:
        self.account_id = account_id
        self._partition = partition_of(region)
        self._clients = clients
        self._calls = calls

    async def describe_image(self, image_id: str) -> ImageInfo | None:
        """None when AWS does not know the image (not found, malformed or unavailable ID)."""
        ec2 = await self._clients.ec2()
        try:
            with self._calls.call("ec2:DescribeImages"):
                # Deprecated and disabled images are still ours: report them, not "not found".
                response = await ec2.describe_images(
                    ImageIds=[image_id], IncludeDeprecated=True, IncludeDisabled=True
                )
        except AwsCallError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        images = response.get("Images", [])
        return image_info(images[0]) if images else None

    async def launch_permissions(self, image_id: str) -> list[Principal]:
        """Accounts, organizations and OUs; `Group: all` is not a destination and is left out."""
        ec2 = await self._clients.ec2()
        with self._calls.call("ec2:DescribeImageAttribute"):
            response = await ec2.describe_image_attribute(
                ImageId=image_id, Attribute="launchPermission"
            )
        found = (launch_principal(item) for item in response.get("LaunchPermissions", []))
        return [principal for principal in found if principal is not None]

    async def snapshot_permissions(self, snapshot_id: str) -> set[str]:
        """Accounts with createVolumePermission; `Group: all` is never ours and left out."""
        ec2 = await self._clients.ec2()
        with self._calls.call("ec2:DescribeSnapshotAttribute"):
            response = await ec2.describe_snapshot_attribute(
                SnapshotId=snapshot_id, Attribute="createVolumePermission"
            )
        return {
            item["UserId"]
            for item in response.get("CreateVolumePermissions", [])
            if "UserId" in item
        }

    async def describe_snapshots(self, snapshot_ids: Sequence[str]) -> list[SnapshotInfo]:
        ec2 = await self._clients.ec2()
        unique = list(dict.fromkeys(snapshot_ids))
        found: list[SnapshotInfo] = []
        for start in range(0, len(unique), DESCRIBE_SNAPSHOTS_CHUNK):
            chunk = unique[start : start + DESCRIBE_SNAPSHOTS_CHUNK]
            with self._calls.call("ec2:DescribeSnapshots"):
                response = await ec2.describe_snapshots(SnapshotIds=chunk)
            found.extend(
                SnapshotInfo(
                    snapshot_id=snapshot["SnapshotId"],
                    encrypted=bool(snapshot.get("Encrypted")),
                    kms_key_id=snapshot.get("KmsKeyId"),
                )
                for snapshot in response.get("Snapshots", [])
            )
        return found

    async def describe_key(self, key_id: str) -> KeyInfo:
        kms = await self._clients.kms()
        with self._calls.call("kms:DescribeKey"):
            response = await kms.describe_key(KeyId=key_id)
        return key_info(response["KeyMetadata"])

    async def get_key_policy(self, key_arn: str) -> str:
        kms = await self._clients.kms()
        with self._calls.call("kms:GetKeyPolicy"):
            response = await kms.get_key_policy(KeyId=key_arn, PolicyName=KEY_POLICY_NAME)
        return response["Policy"]

    async def put_key_policy(self, key_arn: str, policy: str, principals: Sequence[str]) -> Change:
        """Replaces the whole policy: the caller holds the key's lock (read-modify-write)."""
        kms = await self._clients.kms()
        with self._calls.call("kms:PutKeyPolicy"):
            # The lockout safety check stays on: AWS refuses a policy that locks us out.
            response = await kms.put_key_policy(
                KeyId=key_arn, PolicyName=KEY_POLICY_NAME, Policy=policy
            )
        return Change(
            api="kms:PutKeyPolicy",
            resource=key_arn,
            principals=tuple(principals),
            request_id=request_id(response),
        )

    async def create_grant(
        self, key_arn: str, grantee_account_id: str, name: str
    ) -> tuple[str, Change]:
        """Same name, grantee and operations: AWS answers with the existing grant's ID."""
        kms = await self._clients.kms()
        with self._calls.call("kms:CreateGrant"):
            response = await kms.create_grant(
                KeyId=key_arn,
                GranteePrincipal=account(grantee_account_id).iam_root_arn(self._partition),
                Operations=list(GRANT_OPERATIONS),
                Name=name,
            )
        grant_id = response["GrantId"]
        change = Change(
            api="kms:CreateGrant",
            resource=key_arn,
            principals=(grantee_account_id,),
            request_id=request_id(response),
            detail={"grant_id": grant_id, "name": name, "operation": "create"},
        )
        return grant_id, change

    async def list_grants(self, key_arn: str) -> list[GrantInfo]:
        kms = await self._clients.kms()
        grants: list[GrantInfo] = []
        marker: str | None = None
        while True:
            with self._calls.call("kms:ListGrants"):
                response = await (
                    kms.list_grants(KeyId=key_arn, Limit=100, Marker=marker)
                    if marker
                    else kms.list_grants(KeyId=key_arn, Limit=100)
                )
            grants += [
                GrantInfo(
                    grant_id=grant["GrantId"],
                    name=grant.get("Name"),
                    grantee_principal=grant.get("GranteePrincipal", ""),
                    issuing_account=grant.get("IssuingAccount"),
                )
                for grant in response.get("Grants", [])
            ]
            marker = response.get("NextMarker")
            if not response.get("Truncated") or not marker:
                return grants

    async def revoke_grant(self, key_arn: str, grant_id: str) -> Change | None:
        """Revokes the grant; None when it is already gone.

        RevokeGrant, not RetireGrant: we act as the key owner, whose right to revoke comes from
        the key policy, while RetireGrant depends on the grant's retiring principal or grantee.
        """
        kms = await self._clients.kms()
        try:
            with self._calls.call("kms:RevokeGrant"):
                response = await kms.revoke_grant(KeyId=key_arn, GrantId=grant_id)
        except AwsCallError as error:
            if error.code == "NotFoundException":
                return None
            raise
        return Change(
            api="kms:RevokeGrant",
            resource=key_arn,
            request_id=request_id(response),
            detail={"grant_id": grant_id, "operation": "revoke"},
        )

    async def add_snapshot_permission(self, snapshot_id: str, account_ids: Sequence[str]) -> Change:
        """Adds createVolumePermission for 1 to 500 accounts (ValueError otherwise: chunk first)."""
        return await self._modify_snapshot_permission(snapshot_id, account_ids, "add")

    async def remove_snapshot_permission(
        self, snapshot_id: str, account_ids: Sequence[str]
    ) -> Change:
        """Removes createVolumePermission for 1 to 500 accounts (ValueError otherwise)."""
        return await self._modify_snapshot_permission(snapshot_id, account_ids, "remove")

    async def add_launch_permission(self, image_id: str, principals: Sequence[Principal]) -> Change:
        """Adds launch permission for accounts, organizations and OUs; never `Group: all`."""
        return await self._modify_launch_permission(image_id, principals, "add")

    async def remove_launch_permission(
        self, image_id: str, principals: Sequence[Principal]
    ) -> Change:
        return await self._modify_launch_permission(image_id, principals, "remove")

    async def _modify_snapshot_permission(
        self, snapshot_id: str, account_ids: Sequence[str], operation: Operation
    ) -> Change:
        if not 0 < len(account_ids) <= MAX_SNAPSHOT_PERMISSION_IDS:
            raise ValueError(
                f"{len(account_ids)} account IDs: give 1 to {MAX_SNAPSHOT_PERMISSION_IDS} per call"
            )
        ec2 = await self._clients.ec2()
        with self._calls.call("ec2:ModifySnapshotAttribute"):
            # The OperationType + UserIds form: moto ignores the CreateVolumePermission form.
            response = await ec2.modify_snapshot_attribute(
                SnapshotId=snapshot_id,
                Attribute="createVolumePermission",
                OperationType=operation,
                UserIds=list(account_ids),
            )
        return Change(
            api="ec2:ModifySnapshotAttribute",
            resource=snapshot_id,
            principals=tuple(account_ids),
            request_id=request_id(response),
            detail={"operation": operation},
        )

    async def _modify_launch_permission(
        self, image_id: str, principals: Sequence[Principal], operation: Operation
    ) -> Change:
        if not principals:
            raise ValueError("no principals: nothing to change")
        items = [launch_permission_item(principal) for principal in principals]
        ec2 = await self._clients.ec2()
        with self._calls.call("ec2:ModifyImageAttribute"):
            response = await ec2.modify_image_attribute(
                ImageId=image_id,
                LaunchPermission={"Add": items} if operation == "add" else {"Remove": items},
            )
        return Change(
            api="ec2:ModifyImageAttribute",
            resource=image_id,
            principals=tuple(principal.value for principal in principals),
            request_id=request_id(response),
            detail={"operation": operation},
        )


class _AccountClients(Protocol):
    async def ec2(self) -> EC2Client: ...

    async def kms(self) -> KMSClient: ...


class _RegionOf:
    """The shared role clients of one region, as an account acting through an assumed role
    (a destination, or the source when a source role is set) uses them."""

    def __init__(self, clients: SharedRoleClients, region: str) -> None:
        self._shared = clients
        self._region = region

    async def ec2(self) -> EC2Client:
        return await self._shared.ec2(self._region)

    async def kms(self) -> KMSClient:
        return await self._shared.kms(self._region)


class BotoDestinationAccount(_BotoImageCopier):
    """A destination account, seen through the destination role."""

    def __init__(self, account_id: str, clients: _AccountClients, calls: CallRecorder) -> None:
        self.account_id = account_id
        self._clients = clients
        self._calls = calls

    async def can_see_image(self, image_id: str) -> bool:
        ec2 = await self._clients.ec2()
        try:
            with self._calls.call("ec2:DescribeImages"):
                response = await ec2.describe_images(ImageIds=[image_id], IncludeDeprecated=True)
        except AwsCallError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return False
            raise
        return any(image.get("ImageId") == image_id for image in response.get("Images", []))

    async def can_use_key(self, key_arn: str) -> bool:
        """DescribeKey by full ARN (cross-account needs it); denied or unknown means no."""
        kms = await self._clients.kms()
        try:
            with self._calls.call("kms:DescribeKey"):
                await kms.describe_key(KeyId=key_arn)
        except AwsCallError as error:
            if error.kind in (ErrorKind.ACCESS_DENIED, ErrorKind.NOT_FOUND):
                return False
            raise
        return True


def key_info(metadata: KeyMetadataTypeDef) -> KeyInfo:
    return KeyInfo(
        key_arn=metadata["Arn"],
        key_manager=metadata.get("KeyManager", "CUSTOMER"),
        enabled=metadata.get("KeyState", "Enabled") == "Enabled",
    )


def image_info(image: ImageTypeDef) -> ImageInfo:
    mappings = image.get("BlockDeviceMappings", [])
    return ImageInfo(
        image_id=image["ImageId"],
        owner_id=image.get("OwnerId", ""),
        state=image.get("State", "unknown"),
        root_device_type=image.get("RootDeviceType", "ebs"),
        snapshot_ids=tuple(
            snapshot_id
            for mapping in mappings
            if (snapshot_id := mapping.get("Ebs", {}).get("SnapshotId"))
        ),
        name=image.get("Name"),
        tags={
            tag["Key"]: tag["Value"]
            for tag in image.get("Tags", [])
            if "Key" in tag and "Value" in tag and not tag["Key"].startswith("aws:")
        },
        state_reason=image.get("StateReason", {}).get("Message"),
    )


def launch_principal(item: LaunchPermissionTypeDef) -> Principal | None:
    if "UserId" in item:
        return account(item["UserId"])
    if "OrganizationArn" in item:
        return Principal(item["OrganizationArn"], PrincipalType.ORGANIZATION)
    if "OrganizationalUnitArn" in item:
        return Principal(item["OrganizationalUnitArn"], PrincipalType.ORGANIZATIONAL_UNIT)
    return None  # Group: all (public) is never ours to report or to send.


def launch_permission_item(principal: Principal) -> LaunchPermissionTypeDef:
    # "all" would make the image public through a mislabelled principal: refuse it outright.
    if principal.value.strip().lower() == "all":
        raise ValueError("refusing to share an image publicly (principal 'all')")
    return cast(
        "LaunchPermissionTypeDef", {_LAUNCH_PERMISSION_FIELD[principal.type]: principal.value}
    )


def request_id(response: Any) -> str | None:
    found: str | None = response.get("ResponseMetadata", {}).get("RequestId")
    return found


def _satisfies_the_protocol(gateway: BotoAwsGateway) -> AwsGateway:
    return gateway  # mypy checks here that BotoAwsGateway is an AwsGateway
