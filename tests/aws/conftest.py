"""Fixtures for the boto gateway: a moto double over HTTP on loopback, never real AWS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from app.aws.boto_gateway import BotoAwsGateway
from app.sandbox.aws_double import AwsDouble, start

REGION = "us-east-1"
SOURCE_ACCOUNT = "123456789012"  # moto's default account: plain test credentials act as it
DESTINATION_ACCOUNT = "111122223333"
DESTINATION_ROLE = "amishare-verify"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


@pytest.fixture(scope="session", autouse=True)
def fake_credentials() -> Iterator[None]:
    # Fake keys and no profile, so that a mistake can never sign a request for a real account.
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_ENV.items():
            patch.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        yield


@dataclass
class Calls:
    """What the gateway's on_call hook saw: (api, outcome, seconds)."""

    seen: list[tuple[str, str, float]] = field(default_factory=list)

    def __call__(self, api: str, outcome: str, seconds: float) -> None:
        self.seen.append((api, outcome, seconds))

    def outcomes(self, api: str) -> list[str]:
        return [outcome for name, outcome, _ in self.seen if name == api]


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def gateway(double: AwsDouble, calls: Calls) -> AsyncIterator[BotoAwsGateway]:
    async with BotoAwsGateway(
        endpoint_url=double.url, destination_role_name=DESTINATION_ROLE, on_call=calls
    ) as gateway:
        yield gateway


@pytest.fixture(scope="session")
def aws(double: AwsDouble) -> Boto:
    """Sync boto3 clients in the source account, to seed and to inspect."""
    return Boto(double.url)


_boto3_client: Any = boto3.client  # the service name is a runtime value, not a stub literal


class Boto:
    """Sync boto3 clients on the double, one per (service, account), made on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: dict[tuple[str, str | None], Any] = {}

    def client(self, service: str, account_id: str | None = None) -> Any:
        if (service, account_id) not in self._clients:
            self._clients[(service, account_id)] = self._new_client(service, account_id)
        return self._clients[(service, account_id)]

    def _new_client(self, service: str, account_id: str | None) -> Any:
        if account_id is None:
            return _boto3_client(service, region_name=REGION, endpoint_url=self.url)
        issued = self.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/test", RoleSessionName="test"
        )["Credentials"]
        return _boto3_client(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=issued["AccessKeyId"],
            aws_secret_access_key=issued["SecretAccessKey"],
            aws_session_token=issued["SessionToken"],
        )


@pytest.fixture(scope="session")
def double(fake_credentials: None) -> Iterator[AwsDouble]:
    double = start()
    yield double
    double.stop()


@pytest.fixture(autouse=True)
def no_faults(double: AwsDouble) -> Iterator[None]:
    # Faults are global to the double: every test starts and ends without any.
    double.set_faults()
    yield
    double.set_faults()
