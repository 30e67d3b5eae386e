"""The double's server: request log, fault injection, control endpoints, standalone process."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.ec2.models import ec2_backends
from moto.iam.models import iam_backends
from moto.kms.models import kms_backends
from moto.sts.models import sts_backends

from app.sandbox import moto_ext, seed
from app.sandbox.aws_double import AwsDouble, FaultConfig, RecordedRequest, start
from tests.aws_double.conftest import BYSTANDER, DESTINATION, FAKE_ENV, REGION, SOURCE, Account

UNKNOWN = "999999999999"


def control(double: AwsDouble, method: str, path: str, body: object | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{double.url}/_amishare/{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def failure(call: Callable[[], object]) -> tuple[int, str]:
    with pytest.raises(ClientError) as error:
        call()
    response = error.value.response
    return int(response["ResponseMetadata"]["HTTPStatusCode"]), str(response["Error"]["Code"])


def create_volume(account: Account) -> object:
    return account.ec2.create_volume(Size=8, AvailabilityZone=f"{REGION}a")


def calls(double: AwsDouble, since: int = 0) -> list[tuple[str, str, str]]:
    return [(r.account, r.service, r.action) for r in double.requests(since)]


# --- The request log -------------------------------------------------------------------------


def test_records_every_aws_call_with_account_service_action_and_region(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    since = len(double.requests())
    key_arn = source.kms.create_key()["KeyMetadata"]["Arn"]
    source.ec2.describe_images(Owners=["self"])
    destination.ec2.describe_images(ExecutableUsers=["self"])

    recorded = double.requests(since)

    assert calls(double, since) == [
        (SOURCE, "kms", "CreateKey"),
        (SOURCE, "ec2", "DescribeImages"),
        (DESTINATION, "ec2", "DescribeImages"),
    ]
    assert {r.region for r in recorded} == {REGION}
    assert [r.index for r in recorded] == [since, since + 1, since + 2]
    assert [r.status for r in recorded] == [200, 200, 200]
    assert key_arn.startswith(f"arn:aws:kms:{REGION}:{SOURCE}:key/")


def test_parameters_are_recorded_for_mutating_calls_and_assume_role(
    double: AwsDouble, source: Account
) -> None:
    seeded = seed.create_unencrypted_image(double.url)
    since = len(double.requests())

    source.ec2.modify_image_attribute(
        ImageId=seeded.image_id, LaunchPermission={"Add": [{"UserId": DESTINATION}]}
    )
    source.ec2.describe_images(ImageIds=[seeded.image_id])
    seed.assume_account(double.url, DESTINATION, role_name="verifier")

    modify, describe, assume = double.requests(since)
    assert modify.mutating
    assert modify.params == {
        "ImageId": seeded.image_id,
        "LaunchPermission": {"Add": [{"UserId": DESTINATION}]},
    }
    assert not describe.mutating
    assert describe.params is None
    assert not assume.mutating
    assert assume.params is not None
    assert assume.params["RoleArn"] == f"arn:aws:iam::{DESTINATION}:role/verifier"


def test_kms_action_comes_from_the_target_header(double: AwsDouble, source: Account) -> None:
    key = seed.create_customer_key(double.url)
    since = len(double.requests())

    source.kms.put_key_policy(
        KeyId=key.key_id,
        PolicyName="default",
        Policy=json.dumps(seed.default_key_policy()),
    )

    (put,) = double.requests(since)
    assert (put.service, put.action, put.mutating) == ("kms", "PutKeyPolicy", True)
    assert put.params is not None
    assert put.params["KeyId"] == key.key_id


def test_requests_are_served_over_http_since_an_index_and_cleared(
    double: AwsDouble, source: Account
) -> None:
    source.ec2.describe_images(Owners=["self"])
    create_volume(source)

    everything = control(double, "GET", "requests")
    later = control(double, "GET", "requests?since=1")
    control(double, "DELETE", "requests")

    assert [r["action"] for r in everything] == ["DescribeImages", "CreateVolume"]
    assert [r["action"] for r in later] == ["CreateVolume"]
    assert later[0]["params"]["Size"] == 8
    assert control(double, "GET", "requests") == []
    assert double.requests() == []


# --- Fault injection -------------------------------------------------------------------------


def test_throttling_injected_only_on_mutating_calls(double: AwsDouble, source: Account) -> None:
    double.set_faults(throttle_rate=1.0)

    source.ec2.describe_images(Owners=["self"])
    source.kms.list_keys()
    assert failure(lambda: create_volume(source)) == (503, "RequestLimitExceeded")
    assert failure(source.kms.create_key) == (400, "ThrottlingException")

    faults = [(r.action, r.fault) for r in double.requests()]
    assert faults == [
        ("DescribeImages", None),
        ("ListKeys", None),
        ("CreateVolume", "throttle"),
        ("CreateKey", "throttle"),
    ]
    assert source.ec2.describe_volumes()["Volumes"] == []


def test_throttling_can_apply_to_all_calls(double: AwsDouble, source: Account) -> None:
    double.set_faults(throttle_rate=1.0, throttle_all_calls=True)

    assert failure(lambda: source.ec2.describe_images(Owners=["self"])) == (
        503,
        "RequestLimitExceeded",
    )
    assert failure(source.kms.list_keys) == (400, "ThrottlingException")
    assert failure(
        lambda: source.sts.assume_role(
            RoleArn=f"arn:aws:iam::{DESTINATION}:role/any", RoleSessionName="test"
        )
    ) == (400, "Throttling")


def test_faults_can_be_limited_to_some_actions(double: AwsDouble, source: Account) -> None:
    double.set_faults(throttle_rate=1.0, actions=("ModifyImageAttribute",))

    seeded = seed.create_unencrypted_image(double.url)

    assert failure(
        lambda: source.ec2.modify_image_attribute(
            ImageId=seeded.image_id, LaunchPermission={"Add": [{"UserId": DESTINATION}]}
        )
    ) == (503, "RequestLimitExceeded")


def test_refused_accounts_are_refused_only_where_they_are_named(
    double: AwsDouble, source: Account
) -> None:
    double.set_faults(refuse_accounts=(DESTINATION,), actions=("ModifyImageAttribute",))
    seeded = seed.create_encrypted_image(double.url, seed.create_customer_key(double.url).key_id)

    def launch(*accounts: str) -> None:
        source.ec2.modify_image_attribute(
            ImageId=seeded.image_id,
            LaunchPermission={"Add": [{"UserId": a} for a in accounts]},
        )

    assert failure(lambda: launch(BYSTANDER, DESTINATION)) == (400, "InvalidAMIAttributeItemValue")
    launch(BYSTANDER)  # a call that does not name it lands
    source.ec2.modify_snapshot_attribute(  # so do other actions naming it
        SnapshotId=seeded.snapshot_ids[0],
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=[DESTINATION],
    )
    assert [r.fault for r in double.requests() if r.action == "ModifyImageAttribute"] == [
        "refuse",
        None,
    ]


def test_throttling_is_reproducible_for_a_seed(double: AwsDouble, source: Account) -> None:
    def outcomes(seed_value: int) -> list[str | None]:
        double.clear_requests()
        double.set_faults(throttle_rate=0.5, seed=seed_value)
        for _ in range(12):
            with contextlib.suppress(ClientError):
                create_volume(source)
        return [r.fault for r in double.requests()]

    first = outcomes(7)

    assert first == outcomes(7)
    assert "throttle" in first
    assert None in first


def first_draw_only_below(rate: float) -> int:
    """A seed whose first random draw is a fault and whose second is not."""
    return next(
        value
        for value in range(1000)
        if (draws := random.Random(value)) and draws.random() < rate <= draws.random()
    )


def test_botocore_retries_through_injected_throttling(double: AwsDouble, source: Account) -> None:
    double.set_faults(throttle_rate=0.5, seed=first_draw_only_below(0.5))
    retrying = seed.client(
        "ec2",
        double.url,
        REGION,
        source.credentials,
        Config(retries={"mode": "standard", "total_max_attempts": 3}),
    )

    retrying.create_volume(Size=8, AvailabilityZone=f"{REGION}a")

    assert [(r.action, r.status, r.fault) for r in double.requests()] == [
        ("CreateVolume", 503, "throttle"),
        ("CreateVolume", 200, None),
    ]
    assert len(source.ec2.describe_volumes()["Volumes"]) == 1


def test_server_errors_injected_as_http_500(double: AwsDouble, source: Account) -> None:
    double.set_faults(error_rate=1.0)

    assert failure(lambda: source.ec2.describe_images(Owners=["self"])) == (500, "InternalError")
    assert failure(source.kms.list_keys) == (500, "KMSInternalException")
    assert [r.fault for r in double.requests()] == ["error", "error"]


def test_latency_applies_to_every_call(double: AwsDouble, source: Account) -> None:
    source.ec2.describe_images(Owners=["self"])
    double.set_faults(latency_ms=150)

    started = time.perf_counter()
    source.ec2.describe_images(Owners=["self"])
    source.kms.list_keys()

    assert time.perf_counter() - started >= 0.3


def test_access_denied_for_one_account(
    double: AwsDouble, source: Account, destination: Account
) -> None:
    double.set_faults(deny_accounts=(DESTINATION,))
    since = len(double.requests())

    assert failure(lambda: destination.ec2.describe_images(ExecutableUsers=["self"])) == (
        403,
        "UnauthorizedOperation",
    )
    assert failure(destination.kms.list_keys) == (400, "AccessDeniedException")
    assert failure(destination.sts.get_caller_identity) == (403, "AccessDenied")
    source.ec2.describe_images(Owners=["self"])
    assert [(r.account, r.fault) for r in double.requests(since)] == [
        (DESTINATION, "deny"),
        (DESTINATION, "deny"),
        (DESTINATION, "deny"),
        (SOURCE, None),
    ]


def test_assume_role_into_a_refused_account_is_denied(double: AwsDouble) -> None:
    double.set_faults(deny_assume_role_into=(DESTINATION,))

    assert failure(lambda: seed.assume_account(double.url, DESTINATION)) == (403, "AccessDenied")
    seed.assume_account(double.url, "333333333333")


def expired(call: Callable[[], object]) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as error:
        call()
    response = error.value.response
    status = int(response["ResponseMetadata"]["HTTPStatusCode"])
    return status, str(response["Error"]["Code"]), str(response["Error"]["Message"])


TOKEN_EXPIRED = "The security token included in the request is expired"


def test_sts_credentials_older_than_the_lifetime_are_answered_as_expired(
    double: AwsDouble, source: Account, account: Callable[[str], Account]
) -> None:
    old = account(DESTINATION)
    double.set_faults(credential_lifetime_seconds=1.0)
    time.sleep(1.1)
    fresh = account(DESTINATION)
    since = len(double.requests())

    assert expired(lambda: old.ec2.describe_images(Owners=["self"])) == (
        400,
        "RequestExpired",
        "Request has expired.",
    )
    assert expired(old.kms.list_keys) == (400, "ExpiredTokenException", TOKEN_EXPIRED)
    assert expired(old.sts.get_caller_identity) == (400, "ExpiredToken", TOKEN_EXPIRED)
    fresh.ec2.describe_images(Owners=["self"])
    source.kms.list_keys()  # the fake long-term keys never expire

    recorded = [(r.account, r.service, r.status, r.fault) for r in double.requests(since)]
    assert recorded == [
        (DESTINATION, "ec2", 400, "expired"),
        (DESTINATION, "kms", 400, "expired"),
        (DESTINATION, "sts", 400, "expired"),
        (DESTINATION, "ec2", 200, None),
        (SOURCE, "kms", 200, None),
    ]


def test_credentials_never_expire_while_the_lifetime_is_zero(
    double: AwsDouble, account: Callable[[str], Account]
) -> None:
    old = account(DESTINATION)
    time.sleep(0.2)
    double.set_faults(credential_lifetime_seconds=0)

    old.kms.list_keys()


def test_expired_credentials_come_before_other_faults(
    double: AwsDouble, account: Callable[[str], Account]
) -> None:
    old = account(DESTINATION)
    time.sleep(0.2)
    double.set_faults(
        credential_lifetime_seconds=0.1, deny_accounts=(DESTINATION,), throttle_rate=1.0
    )

    assert expired(lambda: create_volume(old))[:2] == (400, "RequestExpired")


def test_faults_are_set_and_read_over_http(double: AwsDouble, source: Account) -> None:
    answer = control(
        double, "PUT", "faults", {"throttle_rate": 1.0, "actions": ["CreateVolume"], "seed": 4}
    )

    assert answer["throttle_rate"] == 1.0
    assert control(double, "GET", "faults") == answer
    assert double.faults() == FaultConfig(throttle_rate=1.0, actions=("CreateVolume",), seed=4)
    assert failure(lambda: create_volume(source)) == (503, "RequestLimitExceeded")
    lifetime = control(double, "PUT", "faults", {"credential_lifetime_seconds": 900})
    assert lifetime["credential_lifetime_seconds"] == 900.0
    assert double.faults() == FaultConfig(credential_lifetime_seconds=900)


@pytest.mark.parametrize(
    "body",
    [
        {"throttle_rate": 2},
        {"latency_ms": -1},
        {"credential_lifetime_seconds": -1},
        {"actions": "CreateVolume"},
        {"throttle_all_calls": "yes"},
        {"no_such_fault": 1},
        ["not", "an", "object"],
    ],
)
def test_invalid_fault_settings_are_refused(double: AwsDouble, body: object) -> None:
    with pytest.raises(urllib.error.HTTPError) as error:
        control(double, "PUT", "faults", body)

    assert error.value.code == 400
    assert double.faults() == FaultConfig()


def test_unknown_accounts_are_set_over_http(double: AwsDouble, source: Account) -> None:
    assert control(double, "PUT", "unknown-accounts", [UNKNOWN]) == [UNKNOWN]
    seeded = seed.create_unencrypted_image(double.url)

    assert failure(
        lambda: source.ec2.modify_image_attribute(
            ImageId=seeded.image_id, LaunchPermission={"Add": [{"UserId": UNKNOWN}]}
        )
    ) == (400, "InvalidAMIAttributeItemValue")
    assert moto_ext.unknown_accounts() == frozenset({UNKNOWN})


def test_reset_forgets_resources_requests_and_faults(double: AwsDouble, source: Account) -> None:
    seed.create_unencrypted_image(double.url)
    double.set_faults(latency_ms=1)
    double.set_unknown_accounts([UNKNOWN])

    control(double, "POST", "reset")

    assert double.requests() == []
    assert double.faults() == FaultConfig()
    assert moto_ext.unknown_accounts() == frozenset()
    assert source.ec2.describe_images(Owners=["self"])["Images"] == []


def test_recorded_requests_serialise_to_json(double: AwsDouble, source: Account) -> None:
    create_volume(source)

    (record,) = double.requests()

    assert isinstance(record, RecordedRequest)
    assert json.loads(json.dumps(record.to_json()))["action"] == "CreateVolume"


# --- Starting and stopping -------------------------------------------------------------------


def test_start_refuses_a_non_loopback_address() -> None:
    with pytest.raises(ValueError, match="loopback"):
        start(host="0.0.0.0")


def test_a_second_double_in_process_serves_on_its_own_port(double: AwsDouble) -> None:
    with start() as other:
        assert other.port != double.port
        assert other.url.startswith("http://127.0.0.1:")
        seed.ec2_client(other.url).describe_images(Owners=["self"])
        assert [r.action for r in other.requests()] == ["DescribeImages"]
    assert double.requests() == []


@pytest.fixture
def standalone() -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, **FAKE_ENV, moto_ext.UNKNOWN_ACCOUNTS_ENV: UNKNOWN}
    command = [sys.executable, "-m", "app.sandbox.aws_double", "--port", "0", "--latency-ms", "1"]
    command += ["--credential-lifetime-seconds", "3600"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:")
        yield process, line.split(" ", 1)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_standalone_process_serves_until_sigterm(
    standalone: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = standalone
    key = seed.create_customer_key(url)
    policy = seed.default_key_policy()
    policy["Statement"][0]["Principal"] = {"AWS": f"arn:aws:iam::{UNKNOWN}:root"}

    assert failure(
        lambda: seed.kms_client(url).put_key_policy(
            KeyId=key.key_id, PolicyName="default", Policy=json.dumps(policy)
        )
    ) == (400, "MalformedPolicyDocumentException")
    with urllib.request.urlopen(f"{url}/_amishare/faults", timeout=10) as answer:
        faults = json.loads(answer.read())
    assert (faults["latency_ms"], faults["credential_lifetime_seconds"]) == (1.0, 3600.0)

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_connections_are_kept_open_between_calls(double: AwsDouble) -> None:
    """HTTP/1.1 keep-alive: a client's calls share one connection, as they do with AWS."""
    request = b"GET /_amishare/faults HTTP/1.1\r\nHost: double\r\n\r\n"
    with socket.create_connection((double.host, double.port), timeout=10) as connection:
        answers = []
        for _ in range(2):
            connection.sendall(request)
            answers.append(read_answer(connection))
    for head, body in answers:
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close" not in head.lower()
        assert json.loads(body)["latency_ms"] == 0


def read_answer(connection: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP/1.1 answer with a Content-Length: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)
    return head, body


def test_opened_accounts_exist_in_every_service_the_service_calls(double: AwsDouble) -> None:
    account = "444455556666"
    double.open_accounts([account])

    for backends in (ec2_backends, kms_backends, iam_backends, sts_backends):
        assert dict.__contains__(backends, account)
