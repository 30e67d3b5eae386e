"""Fixtures: the AWS double (moto server with the project's extension), a fresh database on
SQLite and on PostgreSQL, and the app served over httpx with its lifespan (embedded worker)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

# Nothing in the tests may ever reach real AWS: fake credentials, and every client is pointed at
# the double's loopback endpoint.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing-secret-key",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)
os.environ.pop("AWS_PROFILE", None)

from app.aws.boto_gateway import BotoAwsGateway
from app.config import ApiToken, Settings
from app.db.migrate import upgrade
from app.main import create_app
from app.sandbox.aws_double import AwsDouble, start

POSTGRES_ADMIN_URL = os.environ.get(
    "AMISHARE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
WRITER_TOKEN = "writer-token-for-tests-0123456789"
READER_TOKEN = "reader-token-for-tests-0123456789"
SOURCE_ACCOUNT = "123456789012"  # moto's default account: the service's own credentials
REGION = "us-east-1"
DESTINATION_ROLE = "amishare-destination"


@pytest.fixture(scope="session")
def aws_double() -> Iterator[AwsDouble]:
    double = start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "aws_double" in request.fixturenames:
        double: AwsDouble = request.getfixturevalue("aws_double")
        double.set_faults()
        double.set_unknown_accounts([])


def new_account_ids(count: int) -> list[str]:
    """Fresh, well-formed destination account IDs (never the source)."""
    base = uuid.uuid4().int % 10**6
    return [f"9{base:06d}{i:05d}" for i in range(count)]


async def _create_postgres_database() -> str:
    name = f"amishare_test_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def _drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty, migrated database: a file for SQLite, a new database on the local PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'amishare.db'}"
        await asyncio.to_thread(upgrade, url)
        yield url
        return
    url = await _create_postgres_database()
    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await _drop_postgres_database(url)


def make_settings(database_url: str, double: AwsDouble, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_tokens": [
            ApiToken(name="writer", token=WRITER_TOKEN, scopes=["jobs:read", "jobs:write"]),
            ApiToken(name="reader", token=READER_TOKEN, scopes=["jobs:read"]),
        ],
        "aws_endpoint_url": double.url,
        "destination_role_name": DESTINATION_ROLE,
        "poll_interval_seconds": 0.05,
        "step_backoff_seconds": 0.01,
        "verify_initial_delay_seconds": 0.05,
        "verify_timeout_seconds": 5.0,
        "lease_seconds": 10.0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Service:
    """The app under test: an httpx client with a writer token, its settings and the double."""

    client: httpx.AsyncClient
    settings: Settings
    double: AwsDouble

    async def post_job(self, **body: Any) -> httpx.Response:
        body.setdefault("action", "share")
        body.setdefault("region", REGION)
        return await self.client.post("/v1/jobs", json=body)

    async def wait_for(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until the job is finished, as a dashboard would."""
        async with asyncio.timeout(timeout):
            while True:
                job: dict[str, Any] = (await self.client.get(f"/v1/jobs/{job_id}")).json()
                if job["status"] not in ("queued", "running"):
                    return job
                await asyncio.sleep(0.05)

    async def targets(self, job_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = (await self.client.get(f"/v1/jobs/{job_id}/targets", params=params)).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items


async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    gateway = BotoAwsGateway.from_settings(settings)
    app = create_app(settings, gateway=gateway)
    async with gateway, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://amishare.test",
            headers={"Authorization": f"Bearer {WRITER_TOKEN}"},
        ) as client:
            yield client


@pytest.fixture
async def service(database_url: str, aws_double: AwsDouble) -> AsyncIterator[Service]:
    settings = make_settings(database_url, aws_double)
    async for client in serve(settings):
        yield Service(client, settings, aws_double)
