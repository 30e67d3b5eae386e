"""CopyImage as AWS does it, through the double: cross-account, re-encrypting, cross-Region."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from app.sandbox import moto_ext, seed
from app.sandbox.aws_double import AwsDouble, FaultConfig
from tests.aws_double.conftest import (
    BYSTANDER,
    DESTINATION,
    NO_RETRIES,
    REGION,
    SOURCE,
    Account,
)

WEST = "us-west-2"


class Clock:
    """The copies' clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(moto_ext, "_clock", fake)
    yield fake


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def error_message(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Message"])


def image(account: Account | Any, image_id: str) -> dict[str, Any]:
    ec2 = account.ec2 if isinstance(account, Account) else account
    images: list[dict[str, Any]] = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert len(images) == 1
    return images[0]


def snapshots_of(account: Account | Any, image_id: str) -> list[dict[str, Any]]:
    ec2 = account.ec2 if isinstance(account, Account) else account
    ids = [m["Ebs"]["SnapshotId"] for m in image(ec2, image_id)["BlockDeviceMappings"]]
    found = ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]
    by_id = {s["SnapshotId"]: s for s in found}
    return [by_id[i] for i in ids]


def copy(account: Account, source_image_id: str, **params: Any) -> str:
    params.setdefault("Name", "amishare-copy")
    params.setdefault("SourceRegion", REGION)
    answer = account.ec2.copy_image(SourceImageId=source_image_id, **params)
    return str(answer["ImageId"])


def shared_image(
    double: AwsDouble, snapshot_count: int = 1, key_access: Any = "grant"
) -> seed.SeededImage:
    key = seed.create_customer_key(double.url)
    seeded = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=snapshot_count)
    seed.share_for_copy(double.url, seeded, DESTINATION, key_access=key_access)
    return seeded


def aws_ebs_arn(account: Account) -> str:
    return str(account.kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"])


# --- Cross-account copies --------------------------------------------------------------------


def test_destination_copies_a_shared_image_under_its_own_key(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    seeded = shared_image(double, snapshot_count=2)
    key = seed.create_destination_key(double.url, DESTINATION, "amishare-copies")

    copy_id = copy(
        destination,
        seeded.image_id,
        Name="golden-copy",
        Description="for the destination",
        Encrypted=True,
        KmsKeyId="alias/amishare-copies",
    )

    copied = image(destination, copy_id)
    assert copied["OwnerId"] == DESTINATION
    assert copied["State"] == "available"
    assert (copied["Name"], copied["Description"]) == ("golden-copy", "for the destination")
    assert (copied["SourceImageId"], copied["SourceImageRegion"]) == (seeded.image_id, REGION)
    assert copied["RootDeviceName"] == seed.ROOT_DEVICE
    assert copied["RootDeviceType"] == "ebs"
    snapshots = snapshots_of(destination, copy_id)
    assert len(snapshots) == 2
    assert not {s["SnapshotId"] for s in snapshots} & set(seeded.snapshot_ids)
    for snapshot in snapshots:
        assert snapshot["OwnerId"] == DESTINATION
        assert snapshot["Encrypted"] is True
        assert snapshot["KmsKeyId"] == key.key_arn
        assert snapshot["State"] == "completed"
        assert snapshot["VolumeId"] == moto_ext.COPIED_VOLUME_ID
    assert all(m["Ebs"]["Encrypted"] for m in copied["BlockDeviceMappings"])
    assert image(source, seeded.image_id)["OwnerId"] == SOURCE  # the source is untouched
    with pytest.raises(ClientError) as error:
        image(source, copy_id)
    assert error_code(error) == "InvalidAMIID.NotFound"


@pytest.mark.parametrize(
    "reference", ["key_id", "key_arn", "alias_name", "alias_arn"], ids=lambda r: str(r)
)
def test_kms_key_id_may_name_the_key_any_way(
    double: AwsDouble, destination: Account, reference: str
) -> None:
    seeded = shared_image(double)
    key = seed.create_destination_key(double.url, DESTINATION, "alias/mine")
    references = {
        "key_id": key.key_id,
        "key_arn": key.key_arn,
        "alias_name": "alias/mine",
        "alias_arn": f"arn:aws:kms:{REGION}:{DESTINATION}:alias/mine",
    }

    copy_id = copy(destination, seeded.image_id, Encrypted=True, KmsKeyId=references[reference])

    assert image(destination, copy_id)["State"] == "available"
    assert snapshots_of(destination, copy_id)[0]["KmsKeyId"] == key.key_arn


def test_an_image_not_shared_with_the_caller_is_not_found(
    double: AwsDouble, destination: Account, account: Callable[[str], Account]
) -> None:
    seeded = shared_image(double)

    for caller, image_id in ((account(BYSTANDER), seeded.image_id), (destination, "ami-0123")):
        with pytest.raises(ClientError) as error:
            copy(caller, image_id)
        assert error_code(error) == "InvalidAMIID.NotFound"
    with pytest.raises(ClientError) as error:
        copy(destination, "not-an-image")
    assert error_code(error) == "InvalidAMIID.Malformed"


def test_a_shared_image_whose_snapshots_are_not_shared_cannot_be_copied(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    seeded = shared_image(double, snapshot_count=2)
    source.ec2.modify_snapshot_attribute(
        SnapshotId=seeded.snapshot_ids[1],
        Attribute="createVolumePermission",
        CreateVolumePermission={"Remove": [{"UserId": DESTINATION}]},
    )

    with pytest.raises(ClientError) as error:
        copy(destination, seeded.image_id)

    assert error_code(error) == "InvalidRequest"
    assert error_message(error) == moto_ext.COPY_STORAGE_DENIED_MESSAGE
    assert destination.ec2.describe_images(Owners=["self"])["Images"] == []


@pytest.mark.parametrize(
    "operations",
    [[], ["Decrypt", "DescribeKey"], ["DescribeKey", "CreateGrant"], ["Decrypt", "CreateGrant"]],
    ids=["no-access", "no-create-grant", "no-decrypt", "no-describe-key"],
)
def test_a_copy_without_the_source_key_fails_as_aws_reports_it(
    double: AwsDouble, source: Account, destination: Account, operations: list[str]
) -> None:
    seeded = shared_image(double, key_access="none")
    assert seeded.key_arn is not None
    if operations:
        source.kms.create_grant(
            KeyId=seeded.key_arn,
            GranteePrincipal=f"arn:aws:iam::{DESTINATION}:root",
            Operations=operations,
        )

    copy_id = copy(destination, seeded.image_id)  # AWS checks keys later: the call succeeds

    copied = image(destination, copy_id)
    assert copied["State"] == "failed"
    assert copied["StateReason"] == {
        "Code": "Client.InternalError",
        "Message": moto_ext.COPY_KEY_NOT_ACCESSIBLE_MESSAGE,
    }
    snapshot = snapshots_of(destination, copy_id)[0]
    assert snapshot["State"] == "error"
    assert snapshot["StateMessage"] == moto_ext.COPY_KEY_NOT_ACCESSIBLE_MESSAGE


def test_key_policy_create_grant_for_aws_resources_is_enough_to_copy(
    double: AwsDouble, destination: Account
) -> None:
    seeded = shared_image(double, key_access="policy")

    copy_id = copy(destination, seeded.image_id)

    assert image(destination, copy_id)["State"] == "available"


def test_a_disabled_source_key_fails_the_copy(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    seeded = shared_image(double)
    assert seeded.key_arn is not None
    source.kms.disable_key(KeyId=seeded.key_arn.split("/")[-1])  # moto: the ID, not the ARN

    copy_id = copy(destination, seeded.image_id)

    assert image(destination, copy_id)["StateReason"]["Message"] == (
        moto_ext.COPY_KEY_NOT_ACCESSIBLE_MESSAGE
    )


# --- Encryption --------------------------------------------------------------------------


def test_kms_key_id_without_encrypted_is_refused(double: AwsDouble, destination: Account) -> None:
    seeded = shared_image(double)
    key = seed.create_destination_key(double.url, DESTINATION, "mine")

    for encrypted in ({}, {"Encrypted": False}):
        with pytest.raises(ClientError) as error:
            copy(destination, seeded.image_id, KmsKeyId=key.key_arn, **encrypted)
        assert error_code(error) == "InvalidParameterDependency"
    assert destination.ec2.describe_images(Owners=["self"])["Images"] == []


@pytest.mark.parametrize(
    "problem", ["missing", "missing-alias", "other-region", "other-account", "disabled", "sign"]
)
def test_a_kms_key_id_the_copy_cannot_use_fails_the_copy_later(
    double: AwsDouble, source: Account, destination: Account, problem: str
) -> None:
    seeded = shared_image(double)
    key = seed.create_destination_key(double.url, DESTINATION, "mine")
    if problem == "disabled":
        destination.kms.disable_key(KeyId=key.key_id)
    if problem == "sign":
        signing = destination.kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")
    references = {
        "missing": f"arn:aws:kms:{REGION}:{DESTINATION}:key/00000000-0000-0000-0000-000000000000",
        "missing-alias": "alias/nothing",
        "other-region": key.key_arn.replace(REGION, WEST),
        "other-account": seed.create_customer_key(double.url).key_arn,
        "disabled": key.key_arn,
        "sign": signing["KeyMetadata"]["Arn"] if problem == "sign" else "",
    }

    copy_id = copy(destination, seeded.image_id, Encrypted=True, KmsKeyId=references[problem])

    copied = image(destination, copy_id)
    assert copied["State"] == "failed"
    assert copied["StateReason"] == {
        "Code": "Client.InternalError",
        "Message": moto_ext.COPY_INTERNAL_ERROR_MESSAGE,
    }


@pytest.mark.parametrize("encrypted", [{}, {"Encrypted": True}], ids=["unset", "encrypted"])
def test_without_kms_key_id_a_copy_uses_the_callers_aws_managed_ebs_key(
    double: AwsDouble, destination: Account, encrypted: dict[str, bool]
) -> None:
    seeded = shared_image(double)

    copy_id = copy(destination, seeded.image_id, **encrypted)

    snapshot = snapshots_of(destination, copy_id)[0]
    assert snapshot["Encrypted"] is True
    assert snapshot["KmsKeyId"] == aws_ebs_arn(destination)
    metadata = destination.kms.describe_key(KeyId=snapshot["KmsKeyId"])["KeyMetadata"]
    assert (metadata["KeyManager"], metadata["AWSAccountId"]) == ("AWS", DESTINATION)


def test_an_encrypted_snapshot_never_becomes_unencrypted(
    double: AwsDouble, source: Account
) -> None:
    key = seed.create_customer_key(double.url)
    seeded = seed.create_encrypted_image(double.url, key.key_id)

    copy_id = copy(source, seeded.image_id, Encrypted=False)

    snapshot = snapshots_of(source, copy_id)[0]
    assert (snapshot["Encrypted"], snapshot["KmsKeyId"]) == (True, key.key_arn)


def test_unencrypted_images_copy_unencrypted_unless_asked(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    seeded = seed.create_unencrypted_image(double.url)
    seed.share_for_copy(double.url, seeded, DESTINATION)
    key = seed.create_destination_key(double.url, DESTINATION, "mine")

    plain = snapshots_of(destination, copy(destination, seeded.image_id))[0]
    encrypted_id = copy(destination, seeded.image_id, Encrypted=True, KmsKeyId="alias/mine")

    assert plain["Encrypted"] is False
    assert "KmsKeyId" not in plain
    assert snapshots_of(destination, encrypted_id)[0]["KmsKeyId"] == key.key_arn


# --- In-account and cross-Region copies --------------------------------------------------


def test_source_re_encrypts_its_aws_managed_key_image_with_a_customer_key(
    double: AwsDouble, source: Account
) -> None:
    seeded = seed.create_aws_managed_key_image(double.url, snapshot_count=2)
    key = seed.create_customer_key(double.url)

    copy_id = copy(
        source, seeded.image_id, Name="re-encrypted", Encrypted=True, KmsKeyId=key.key_id
    )

    assert image(source, copy_id)["OwnerId"] == SOURCE
    for snapshot in snapshots_of(source, copy_id):
        assert snapshot["KmsKeyId"] == key.key_arn
        source.ec2.modify_snapshot_attribute(  # shareable now: no OperationNotPermitted
            SnapshotId=snapshot["SnapshotId"],
            Attribute="createVolumePermission",
            CreateVolumePermission={"Add": [{"UserId": DESTINATION}]},
        )


def test_an_in_account_copy_keeps_each_snapshot_key_by_default(
    double: AwsDouble, source: Account
) -> None:
    first, second = seed.create_customer_key(double.url), seed.create_customer_key(double.url)
    seeded = seed.create_image_under_keys(double.url, [first.key_id, second.key_id])

    copy_id = copy(source, seeded.image_id)

    keys = [s["KmsKeyId"] for s in snapshots_of(source, copy_id)]
    assert keys == [first.key_arn, second.key_arn]


def test_cross_region_copy_reads_the_source_region_and_lands_in_the_callers(
    double: AwsDouble, source: Account
) -> None:
    key = seed.create_customer_key(double.url)
    seeded = seed.create_encrypted_image(double.url, key.key_id)
    west = seed.client("ec2", double.url, WEST, seed.FAKE_CREDENTIALS, NO_RETRIES)
    west_kms = seed.client("kms", double.url, WEST, seed.FAKE_CREDENTIALS, NO_RETRIES)
    west_key = seed.create_customer_key(double.url, region=WEST)

    default_id = west.copy_image(SourceImageId=seeded.image_id, SourceRegion=REGION, Name="w")
    chosen_id = west.copy_image(
        SourceImageId=seeded.image_id,
        SourceRegion=REGION,
        Name="w2",
        Encrypted=True,
        KmsKeyId=west_key.key_arn,
    )
    wrong_region_id = west.copy_image(
        SourceImageId=seeded.image_id,
        SourceRegion=REGION,
        Name="w3",
        Encrypted=True,
        KmsKeyId=key.key_arn,  # a us-east-1 key for a us-west-2 copy
    )

    west_ebs = west_kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]["Arn"]
    assert snapshots_of(west, default_id["ImageId"])[0]["KmsKeyId"] == west_ebs
    assert snapshots_of(west, chosen_id["ImageId"])[0]["KmsKeyId"] == west_key.key_arn
    assert image(west, wrong_region_id["ImageId"])["State"] == "failed"
    assert image(west, default_id["ImageId"])["SourceImageRegion"] == REGION
    assert source.ec2.describe_images(Owners=["self"])["Images"][0]["ImageId"] == seeded.image_id
    assert len(source.ec2.describe_images(Owners=["self"])["Images"]) == 1
    with pytest.raises(ClientError) as error:  # the image is in us-east-1, not us-west-2
        west.copy_image(SourceImageId=seeded.image_id, SourceRegion=WEST, Name="w4")
    assert error_code(error) == "InvalidAMIID.NotFound"


def test_destination_copies_a_shared_image_into_another_region(
    double: AwsDouble, destination: Account
) -> None:
    seeded = shared_image(double)
    west = seed.client("ec2", double.url, WEST, destination.credentials, NO_RETRIES)

    copy_id = west.copy_image(SourceImageId=seeded.image_id, SourceRegion=REGION, Name="far")

    copied = image(west, copy_id["ImageId"])
    assert (copied["OwnerId"], copied["State"]) == (DESTINATION, "available")


# --- Pending, available, failed ----------------------------------------------------------


def test_a_copy_is_pending_for_copy_seconds_then_available(
    double: AwsDouble, destination: Account, clock: Clock
) -> None:
    seeded = shared_image(double)
    double.set_faults(copy_seconds=30)

    copy_id = copy(destination, seeded.image_id)

    assert image(destination, copy_id)["State"] == "pending"
    assert snapshots_of(destination, copy_id)[0]["State"] == "pending"
    pending = destination.ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "state", "Values": ["pending"]}]
    )["Images"]
    assert [i["ImageId"] for i in pending] == [copy_id]
    clock.advance(29)
    assert image(destination, copy_id)["State"] == "pending"
    clock.advance(1)
    assert image(destination, copy_id)["State"] == "available"
    assert "StateReason" not in image(destination, copy_id)
    assert snapshots_of(destination, copy_id)[0]["State"] == "completed"


def test_snapshots_show_the_end_of_a_copy_without_describing_the_image(
    double: AwsDouble, destination: Account, clock: Clock
) -> None:
    seeded = shared_image(double)
    double.set_faults(copy_seconds=5)
    copy_id = copy(destination, seeded.image_id)
    snapshot_ids = [
        m["Ebs"]["SnapshotId"] for m in image(destination, copy_id)["BlockDeviceMappings"]
    ]
    clock.advance(5)

    found = destination.ec2.describe_snapshots(SnapshotIds=snapshot_ids)["Snapshots"]

    assert [s["State"] for s in found] == ["completed"]


@pytest.mark.parametrize(
    "faults",
    [
        {"copy_fail_accounts": [DESTINATION]},
        {"copy_fail_names": ["amishare-*-dest"]},
        {"copy_fail_rate": 1.0},
    ],
    ids=["by-account", "by-name", "by-rate"],
)
def test_chosen_copies_fail_after_their_copy_time(
    double: AwsDouble, destination: Account, clock: Clock, faults: dict[str, Any]
) -> None:
    seeded = shared_image(double)
    double.set_faults(copy_seconds=10, **faults)

    copy_id = copy(destination, seeded.image_id, Name="amishare-golden-dest")

    assert image(destination, copy_id)["State"] == "pending"
    clock.advance(10)
    copied = image(destination, copy_id)
    assert copied["State"] == "failed"
    assert copied["StateReason"] == {
        "Code": "Server.InternalError",
        "Message": moto_ext.COPY_INTERNAL_ERROR_MESSAGE,
    }
    snapshot = snapshots_of(destination, copy_id)[0]
    assert (snapshot["State"], snapshot["StateMessage"]) == (
        "error",
        moto_ext.COPY_INTERNAL_ERROR_MESSAGE,
    )


def test_copies_not_chosen_to_fail_succeed(double: AwsDouble, destination: Account) -> None:
    seeded = shared_image(double)
    double.set_faults(copy_fail_accounts=[BYSTANDER], copy_fail_names=["other-*"])

    assert image(destination, copy(destination, seeded.image_id))["State"] == "available"


def test_copy_fail_rate_draws_from_the_seed(double: AwsDouble, destination: Account) -> None:
    seeded = shared_image(double)

    def outcomes() -> list[str]:
        double.set_faults(copy_fail_rate=0.5, seed=11)
        ids = [copy(destination, seeded.image_id, Name=f"c{n}") for n in range(12)]
        return [image(destination, i)["State"] for i in ids]

    first, second = outcomes(), outcomes()
    assert first == second
    assert set(first) == {"available", "failed"}


def test_an_image_still_pending_cannot_be_copied(
    double: AwsDouble, source: Account, clock: Clock
) -> None:
    seeded = seed.create_unencrypted_image(double.url)
    double.set_faults(copy_seconds=60)
    copy_id = copy(source, seeded.image_id)

    with pytest.raises(ClientError) as error:
        copy(source, copy_id, Name="copy-of-copy")
    assert error_code(error) == "IncorrectState"
    clock.advance(60)
    assert image(source, copy(source, copy_id, Name="copy-of-copy"))["State"] == "pending"


# --- Client tokens -----------------------------------------------------------------------


def test_client_token_makes_copy_image_idempotent(double: AwsDouble, destination: Account) -> None:
    seeded = shared_image(double)

    first = copy(destination, seeded.image_id, ClientToken="job-1/dest")
    again = copy(destination, seeded.image_id, ClientToken="job-1/dest")
    other_case = copy(destination, seeded.image_id, ClientToken="JOB-1/dest")

    assert again == first
    assert other_case != first
    owned = destination.ec2.describe_images(Owners=["self"])["Images"]
    assert sorted(i["ImageId"] for i in owned) == sorted([first, other_case])


def test_client_token_reused_with_other_parameters_is_a_mismatch(
    double: AwsDouble, destination: Account
) -> None:
    seeded = shared_image(double)
    copy(destination, seeded.image_id, ClientToken="t", Name="one")

    with pytest.raises(ClientError) as error:
        copy(destination, seeded.image_id, ClientToken="t", Name="two")
    assert error_code(error) == "IdempotentParameterMismatch"


def test_client_token_answers_the_same_image_after_it_was_deregistered(
    double: AwsDouble, destination: Account
) -> None:
    seeded = shared_image(double)
    first = copy(destination, seeded.image_id, ClientToken="t")
    destination.ec2.deregister_image(ImageId=first)

    assert copy(destination, seeded.image_id, ClientToken="t") == first


def test_client_token_over_64_characters_is_refused(
    double: AwsDouble, destination: Account
) -> None:
    seeded = shared_image(double)
    copy(destination, seeded.image_id, ClientToken="x" * 64)

    with pytest.raises(ClientError) as error:
        copy(destination, seeded.image_id, ClientToken="x" * 65)
    assert error_code(error) == "InvalidParameterValue"


# --- Tags --------------------------------------------------------------------------------


def test_copy_image_tags_copies_only_the_callers_view_of_the_tags(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    seeded = shared_image(double)
    seed.tag_image(double.url, seeded.image_id, {"team": "source", "env": "prod"})
    seed.tag_image(
        double.url, seeded.image_id, {"mine": "yes"}, credentials=destination.credentials
    )

    own_copy = copy(source, seeded.image_id, CopyImageTags=True)
    untagged_copy = copy(source, seeded.image_id)
    destination_copy = copy(destination, seeded.image_id, CopyImageTags=True)

    def tags(account: Account, image_id: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in image(account, image_id).get("Tags", [])}

    assert tags(source, own_copy) == {"team": "source", "env": "prod"}
    assert tags(source, untagged_copy) == {}
    assert tags(destination, destination_copy) == {"mine": "yes"}


def test_tag_specifications_tag_the_new_image_and_every_new_snapshot(
    double: AwsDouble, destination: Account
) -> None:
    seeded = shared_image(double, snapshot_count=2)

    copy_id = copy(
        destination,
        seeded.image_id,
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "amishare:job", "Value": "j-1"}]},
            {"ResourceType": "snapshot", "Tags": [{"Key": "amishare:copy", "Value": "yes"}]},
        ],
    )

    assert image(destination, copy_id)["Tags"] == [{"Key": "amishare:job", "Value": "j-1"}]
    for snapshot in snapshots_of(destination, copy_id):
        assert snapshot["Tags"] == [{"Key": "amishare:copy", "Value": "yes"}]


def test_tag_specifications_for_other_resource_types_are_refused(
    double: AwsDouble, destination: Account
) -> None:
    seeded = shared_image(double)

    with pytest.raises(ClientError) as error:
        copy(
            destination,
            seeded.image_id,
            TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "k", "Value": "v"}]}],
        )
    assert error_code(error) == "InvalidParameterValue"


def test_copies_are_found_by_owner_and_by_tag_but_not_as_shared_with_self(
    double: AwsDouble, destination: Account
) -> None:
    seeded = shared_image(double)
    tag = [{"ResourceType": "image", "Tags": [{"Key": "amishare:job", "Value": "j-7"}]}]
    copy_id = copy(destination, seeded.image_id, TagSpecifications=tag)
    copy(destination, seeded.image_id, Name="untagged")

    def ids(**query: Any) -> list[str]:
        return [i["ImageId"] for i in destination.ec2.describe_images(**query)["Images"]]

    by_tag = ids(Owners=["self"], Filters=[{"Name": "tag:amishare:job", "Values": ["j-7"]}])
    assert by_tag == [copy_id]
    assert copy_id in ids(Owners=["self"])
    assert copy_id in ids(Owners=[DESTINATION])
    assert ids(ExecutableUsers=["self"]) == [seeded.image_id]  # shared with it; not its own


# --- Limits ------------------------------------------------------------------------------


def test_pending_copies_are_limited_per_account_and_region(
    double: AwsDouble, destination: Account, account: Callable[[str], Account], clock: Clock
) -> None:
    seeded = shared_image(double)
    seed.share_for_copy(double.url, seeded, BYSTANDER)
    double.set_faults(copy_seconds=60, max_pending_copies=2)
    copy(destination, seeded.image_id, Name="one")
    copy(destination, seeded.image_id, Name="two")

    with pytest.raises(ClientError) as error:
        copy(destination, seeded.image_id, Name="three")
    assert error_code(error) == "ResourceLimitExceeded"
    assert "The limit is 2" in error_message(error)
    copy(account(BYSTANDER), seeded.image_id, Name="another-account")
    west = seed.client("ec2", double.url, WEST, destination.credentials, NO_RETRIES)
    west.copy_image(SourceImageId=seeded.image_id, SourceRegion=REGION, Name="another-region")
    clock.advance(60)
    copy(destination, seeded.image_id, Name="three")


def test_the_default_pending_limit_is_awss_fifty(
    double: AwsDouble, source: Account, clock: Clock
) -> None:
    seeded = seed.create_unencrypted_image(double.url)
    double.set_faults(copy_seconds=60)
    for n in range(50):
        copy(source, seeded.image_id, Name=f"c{n}")

    with pytest.raises(ClientError) as error:
        copy(source, seeded.image_id, Name="c50")
    assert error_code(error) == "ResourceLimitExceeded"
    double.set_faults(copy_seconds=60, max_pending_copies=0)  # 0: no limit
    copy(source, seeded.image_id, Name="c50")


# --- Deregistering copies ----------------------------------------------------------------


def test_deregistering_a_pending_copy_stops_it_and_frees_its_place(
    double: AwsDouble, destination: Account, clock: Clock
) -> None:
    seeded = shared_image(double)
    double.set_faults(copy_seconds=60, max_pending_copies=1)
    copy_id = copy(destination, seeded.image_id)
    snapshot_ids = [s["SnapshotId"] for s in snapshots_of(destination, copy_id)]

    destination.ec2.deregister_image(ImageId=copy_id)

    assert destination.ec2.describe_images(Owners=["self"])["Images"] == []
    owned = destination.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert not {s["SnapshotId"] for s in owned} & set(snapshot_ids)
    copy(destination, seeded.image_id, Name="next")  # the pending place is free again
    clock.advance(60)
    with pytest.raises(ClientError) as error:
        destination.ec2.deregister_image(ImageId=copy_id)
    assert error_code(error) == "InvalidAMIID.Unavailable"


def test_deregistering_a_finished_copy_leaves_its_snapshots_unless_asked(
    double: AwsDouble, destination: Account
) -> None:
    seeded = shared_image(double)
    kept_id, deleted_id = copy(destination, seeded.image_id), copy(destination, seeded.image_id)
    kept = [s["SnapshotId"] for s in snapshots_of(destination, kept_id)]
    deleted = [s["SnapshotId"] for s in snapshots_of(destination, deleted_id)]

    destination.ec2.deregister_image(ImageId=kept_id)
    answer = destination.ec2.deregister_image(ImageId=deleted_id, DeleteAssociatedSnapshots=True)

    owned = {
        s["SnapshotId"] for s in destination.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    }
    assert set(kept) <= owned
    assert not set(deleted) & owned
    assert answer["DeleteSnapshotResults"] == [
        {"SnapshotId": s, "ReturnCode": "success"} for s in deleted
    ]


def test_a_copys_snapshot_is_in_use_while_the_copy_exists(
    double: AwsDouble, destination: Account
) -> None:
    seeded = shared_image(double)
    snapshot_id = snapshots_of(destination, copy(destination, seeded.image_id))[0]["SnapshotId"]

    with pytest.raises(ClientError) as error:
        destination.ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert error_code(error) == "InvalidSnapshot.InUse"


# --- Configuration -----------------------------------------------------------------------


def test_copy_faults_travel_through_the_control_endpoint(double: AwsDouble) -> None:
    config = FaultConfig.from_json(
        {
            "copy_seconds": 2,
            "copy_fail_rate": 0.25,
            "copy_fail_accounts": [DESTINATION],
            "copy_fail_names": ["x-*"],
            "max_pending_copies": 3,
            "seed": 5,
        }
    )
    double.set_faults(config)

    settings = moto_ext.copy_settings()
    assert settings == moto_ext.CopySettings(2.0, 0.25, frozenset({DESTINATION}), ("x-*",), 3, 5)
    assert json.loads(json.dumps(config.to_json()))["copy_fail_names"] == ["x-*"]
    double.reset()
    assert moto_ext.copy_settings() == moto_ext.CopySettings()


@pytest.mark.parametrize(
    "bad",
    [
        {"copy_seconds": -1},
        {"copy_fail_rate": 1.5},
        {"max_pending_copies": -1},
        {"copy_fail_names": "x"},
    ],
)
def test_copy_fault_values_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultConfig.from_json(bad)
