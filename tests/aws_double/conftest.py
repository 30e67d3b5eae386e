"""One AWS double per test module, on loopback, with fake credentials: never real AWS."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pytest
from botocore.config import Config

from app.sandbox import seed
from app.sandbox.aws_double import AwsDouble, start

REGION = seed.DEFAULT_REGION
SOURCE = seed.SOURCE_ACCOUNT_ID
DESTINATION = "111111111111"
BYSTANDER = "222222222222"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": seed.FAKE_ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": seed.FAKE_SECRET_ACCESS_KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
}
UNSET_ENV = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL")
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture(scope="module")
def double() -> Iterator[AwsDouble]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_ENV.items():
            patch.setenv(name, value)
        for name in UNSET_ENV:
            patch.delenv(name, raising=False)
        with start() as running:
            yield running
            running.reset()


@pytest.fixture(autouse=True)
def fresh_double(double: AwsDouble) -> None:
    """Every test starts with no AWS resources, no recorded calls, no faults."""
    double.reset()


@dataclass
class Account:
    """Sync boto3 clients acting as one AWS account on the double (no client-side retries)."""

    account_id: str
    credentials: seed.Credentials
    url: str

    def client(self, service: str) -> Any:
        return seed.client(service, self.url, REGION, self.credentials, NO_RETRIES)

    @cached_property
    def ec2(self) -> Any:
        return self.client("ec2")

    @cached_property
    def kms(self) -> Any:
        return self.client("kms")

    @cached_property
    def sts(self) -> Any:
        return self.client("sts")


@pytest.fixture
def source(double: AwsDouble) -> Account:
    return Account(SOURCE, seed.FAKE_CREDENTIALS, double.url)


@pytest.fixture
def account(double: AwsDouble) -> Callable[[str], Account]:
    """Act as another account: STS AssumeRole into arn:aws:iam::<acct>:role/any."""

    def act_as(account_id: str) -> Account:
        return Account(account_id, seed.assume_account(double.url, account_id), double.url)

    return act_as


@pytest.fixture
def destination(account: Callable[[str], Account]) -> Account:
    return account(DESTINATION)
