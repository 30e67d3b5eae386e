"""Guardrails on jobs: the service's allowed sources and destinations, a token's own, the source
role rule, and a retry that checks them all again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from app.api.auth import Caller, TokenBook
from app.config import ApiToken, Settings
from app.db.engine import SessionFactory, make_engine, make_session_factory
from app.db.migrate import upgrade
from app.db.models import Job, JobTarget
from app.db.types import utcnow
from app.domain.types import Action, JobStatus, KmsAccess, TargetStatus
from app.sandbox import seed
from app.sandbox.aws_double import AwsDouble
from app.service.errors import ConflictError, InvalidRequestError
from app.service.jobs import JobService
from app.service.requests import NewJob
from tests.api.test_auth import bearer, other_app
from tests.conftest import (
    REGION,
    SOURCE_ACCOUNT,
    WRITER_TOKEN,
    Service,
    make_settings,
    new_account_ids,
    serve,
)
from tests.e2e.aws_state import launch_permission_accounts

MGMT = "111111111111"
ORG = f"arn:aws:organizations::{MGMT}:organization/o-abcdefghij"
OU = f"arn:aws:organizations::{MGMT}:ou/o-abcdefghij/ou-ab12-cdefghij"
FOREIGN_OU = "arn:aws:organizations::999999999999:ou/o-abcdefghij/ou-ab12-cdefghij"
SOURCE_ROLE = {"source_role_name": "amishare-source"}


async def own_account() -> str:
    return SOURCE_ACCOUNT


@pytest.fixture(scope="module")
async def sessions(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SessionFactory]:
    """One database for the module: the rules are checked before the database is, and the
    retries need only a few rows."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('guardrails') / 'amishare.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    await engine.dispose()


def new_job(**changes: Any) -> NewJob:
    fields: dict[str, Any] = {
        "action": Action.SHARE,
        "image_id": "ami-0123456789abcdef0",
        "region": REGION,
        "source_account_id": None,
        "account_ids": ["222222222222"],
        "organization_arns": [],
        "organizational_unit_arns": [],
        "kms_access": KmsAccess.KEY_POLICY,
        "share_snapshots": True,
        "verify": False,
        "copy": None,
    }
    return NewJob(**(fields | changes))


def policy(**settings: Any) -> Settings:
    return Settings(**settings)


def caller(**limits: Any) -> Caller:
    """The Caller a token with these limits is identified as."""
    entry = ApiToken(name="limited", token=WRITER_TOKEN, scopes=["jobs:write"], **limits)
    found = TokenBook([entry]).identify(WRITER_TOKEN)
    assert found is not None
    return found


UNLIMITED = caller()


async def create(
    sessions: SessionFactory, job: NewJob, by: Caller = UNLIMITED, **settings: Any
) -> Job:
    async with sessions() as session, session.begin():
        service = JobService(session, policy(**settings), own_account)
        found, created = await service.create(job, by, None)
    assert created
    return found.job


async def refused(
    sessions: SessionFactory, job: NewJob, by: Caller = UNLIMITED, **settings: Any
) -> dict[str, str]:
    """The 422's errors, field by field."""
    with pytest.raises(InvalidRequestError) as raised:
        await create(sessions, job, by, **settings)
    return {error.field: error.message for error in raised.value.errors}


class TestSources:
    async def test_a_source_outside_the_allowed_sources_is_422(
        self, sessions: SessionFactory
    ) -> None:
        errors = await refused(
            sessions,
            new_job(source_account_id="333333333333"),
            allowed_sources=["4444*"],
            **SOURCE_ROLE,
        )

        assert errors == {"source_account_id": "not among this service's allowed source accounts"}

    async def test_the_own_account_used_by_default_must_be_allowed_too(
        self, sessions: SessionFactory
    ) -> None:
        errors = await refused(sessions, new_job(), allowed_sources=["4444*"])

        assert list(errors) == ["source_account_id"]
        assert SOURCE_ACCOUNT in errors["source_account_id"]

    async def test_a_source_inside_the_allowed_sources_is_accepted(
        self, sessions: SessionFactory
    ) -> None:
        job = await create(
            sessions,
            new_job(source_account_id="333344445555"),
            allowed_sources=["3333*", SOURCE_ACCOUNT],
            **SOURCE_ROLE,
        )
        by_default = await create(sessions, new_job(), allowed_sources=["3333*", SOURCE_ACCOUNT])

        assert job.source_account_id == "333344445555"
        assert by_default.source_account_id == SOURCE_ACCOUNT

    async def test_without_a_source_role_only_the_own_account_can_be_the_source(
        self, sessions: SessionFactory
    ) -> None:
        errors = await refused(sessions, new_job(source_account_id="333333333333"))
        given_own = await create(sessions, new_job(source_account_id=SOURCE_ACCOUNT))
        with_role = await create(sessions, new_job(source_account_id="333333333333"), **SOURCE_ROLE)

        assert list(errors) == ["source_account_id"]
        assert "AMISHARE_SOURCE_ROLE_NAME" in errors["source_account_id"]
        assert given_own.source_account_id == SOURCE_ACCOUNT
        assert with_role.source_account_id == "333333333333"

    async def test_a_token_limited_to_other_sources_is_422(self, sessions: SessionFactory) -> None:
        errors = await refused(sessions, new_job(), caller(sources=["4444*"]))

        assert list(errors) == ["source_account_id"]
        assert "this token's allowed source accounts" in errors["source_account_id"]

    async def test_a_source_must_satisfy_the_service_and_the_token(
        self, sessions: SessionFactory
    ) -> None:
        token_only = await refused(
            sessions, new_job(), caller(sources=[SOURCE_ACCOUNT]), allowed_sources=["4444*"]
        )
        both = await create(
            sessions, new_job(), caller(sources=["1234*"]), allowed_sources=[SOURCE_ACCOUNT]
        )

        assert "this service's" in token_only["source_account_id"]
        assert both.created_by == "limited"


class TestTokenDestinations:
    async def test_a_destination_outside_the_tokens_list_is_422_naming_it(
        self, sessions: SessionFactory
    ) -> None:
        errors = await refused(
            sessions,
            new_job(account_ids=["222211112222", "333311112222"], organization_arns=[ORG]),
            caller(destinations=["2222*"]),
        )

        assert errors == {
            "account_ids[1]": "not among this token's allowed destinations",
            "organization_arns[0]": "not among this token's allowed destinations",
        }

    async def test_a_destination_must_satisfy_the_service_and_the_token(
        self, sessions: SessionFactory
    ) -> None:
        errors = await refused(
            sessions,
            new_job(account_ids=["222211112222", "333311112222", "444411112222"]),
            caller(destinations=["2222*", "4444*"]),
            allowed_destinations=["3333*", "4444*"],
        )

        assert errors == {
            "account_ids[0]": "not among this service's allowed destinations",
            "account_ids[1]": "not among this token's allowed destinations",
        }

    async def test_a_tokens_organization_entry_allows_its_ous_and_no_other(
        self, sessions: SessionFactory
    ) -> None:
        limited = caller(destinations=[ORG])
        job = await create(
            sessions, new_job(account_ids=[], organizational_unit_arns=[OU]), limited
        )
        errors = await refused(
            sessions, new_job(account_ids=[], organizational_unit_arns=[FOREIGN_OU]), limited
        )

        assert job.created_by == "limited"
        assert list(errors) == ["organizational_unit_arns[0]"]

    async def test_a_token_without_lists_is_limited_by_the_service_only(
        self, sessions: SessionFactory
    ) -> None:
        within = await create(
            sessions, new_job(account_ids=["333311112222"]), allowed_destinations=["3333*"]
        )
        errors = await refused(
            sessions, new_job(account_ids=["444411112222"]), allowed_destinations=["3333*"]
        )

        assert within.created_by == "limited"
        assert errors == {"account_ids[0]": "not among this service's allowed destinations"}


async def failed_job(sessions: SessionFactory, accounts: list[str]) -> str:
    """A finished job whose every target failed."""
    job = await create(sessions, new_job(account_ids=accounts))
    async with sessions() as session, session.begin():
        await session.execute(
            update(Job)
            .where(col(Job.id) == job.id)
            .values(status=JobStatus.FAILED, finished_at=utcnow())
        )
        await session.execute(
            update(JobTarget)
            .where(col(JobTarget.job_id) == job.id)
            .values(status=TargetStatus.FAILED, error_code="AccessDenied", error_message="no")
        )
    return job.id


async def targets_of(sessions: SessionFactory, job_id: str) -> dict[str, JobTarget]:
    async with sessions() as session:
        query = select(JobTarget).where(col(JobTarget.job_id) == job_id)
        return {t.principal: t for t in (await session.execute(query)).scalars()}


async def retry(
    sessions: SessionFactory, job_id: str, by: Caller = UNLIMITED, **settings: Any
) -> Job:
    async with sessions() as session, session.begin():
        found = await JobService(session, policy(**settings), own_account).retry(job_id, by)
    return found.job


class TestRetry:
    async def test_a_target_the_token_no_longer_allows_stays_failed(
        self, sessions: SessionFactory
    ) -> None:
        accounts = new_account_ids(3)
        job_id = await failed_job(sessions, accounts)

        job = await retry(sessions, job_id, caller(destinations=accounts[:2]))

        assert job.status == JobStatus.QUEUED
        targets = await targets_of(sessions, job_id)
        assert [targets[a].status for a in accounts] == ["pending", "pending", "failed"]
        refused_target = targets[accounts[2]]
        assert refused_target.error_code == "DestinationNotAllowed"
        assert refused_target.error_message is not None
        assert "guardrail no longer allows" in refused_target.error_message
        assert "token's allowed destinations" in refused_target.error_message

    async def test_a_retry_with_nothing_allowed_is_409_saying_why(
        self, sessions: SessionFactory
    ) -> None:
        accounts = new_account_ids(2)
        job_id = await failed_job(sessions, accounts)

        with pytest.raises(ConflictError, match="this token's allowed destinations"):
            await retry(sessions, job_id, caller(destinations=["4444*"]))
        with pytest.raises(ConflictError, match="this service's allowed destinations"):
            await retry(sessions, job_id, allowed_destinations=["4444*"])

        targets = await targets_of(sessions, job_id)
        assert {t.status for t in targets.values()} == {"failed"}

    async def test_a_job_whose_source_is_no_longer_allowed_is_not_retried(
        self, sessions: SessionFactory
    ) -> None:
        job_id = await failed_job(sessions, new_account_ids(2))

        with pytest.raises(ConflictError, match="allowed source accounts"):
            await retry(sessions, job_id, allowed_sources=["4444*"])
        with pytest.raises(ConflictError, match="this token's allowed source accounts"):
            await retry(sessions, job_id, caller(sources=["4444*"]))

        targets = await targets_of(sessions, job_id)
        assert {t.error_code for t in targets.values()} == {"AccessDenied"}


async def test_a_retry_requeues_only_what_a_tightened_guardrail_still_allows(
    service: Service,
) -> None:
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    accounts = new_account_ids(3)
    kept, dropped = accounts[1], accounts[2]
    double.set_unknown_accounts([kept, dropped])
    created = await service.post_job(image_id=image.image_id, account_ids=accounts)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    first = await service.wait_for(job_id)
    assert first["status"] == "partially_succeeded", first
    double.set_unknown_accounts([])  # both destinations exist now

    async with other_app(service, allowed_destinations=accounts[:2]) as client:
        client.headers.update(bearer(WRITER_TOKEN))
        tightened = Service(client, service.settings, double)
        retried = await client.post(f"/v1/jobs/{job_id}/retry")

        assert retried.status_code == 202, retried.text
        job = await tightened.wait_for(job_id)  # the first app's worker runs the retry
        targets = {t["principal"]: t for t in await tightened.targets(job_id)}
        assert targets[kept]["status"] == "succeeded"
        assert targets[dropped]["status"] == "failed"
        assert targets[dropped]["error"]["code"] == "DestinationNotAllowed"
        assert "guardrail no longer allows" in targets[dropped]["error"]["message"]
        assert job["status"] == "partially_succeeded"

        again = await client.post(f"/v1/jobs/{job_id}/retry")

        assert again.status_code == 409, again.text
        assert "allowed destinations" in again.json()["detail"]


async def test_the_worker_checks_again_a_job_queued_before_the_guardrail_tightened(
    database_url: str, aws_double: AwsDouble
) -> None:
    key = seed.create_customer_key(aws_double.url)
    image = seed.create_encrypted_image(aws_double.url, key.key_id)
    allowed, dropped = new_account_ids(2)
    queued_by = make_settings(database_url, aws_double, embedded_worker=False)
    async for client in serve(queued_by):
        created = await Service(client, queued_by, aws_double).post_job(
            image_id=image.image_id, account_ids=[allowed, dropped]
        )
        assert created.status_code == 202, created.text
    job_id = created.json()["id"]

    tightened = make_settings(database_url, aws_double, allowed_destinations=[allowed])
    async for client in serve(tightened):
        service = Service(client, tightened, aws_double)
        job = await service.wait_for(job_id)
        targets = {t["principal"]: t for t in await service.targets(job_id)}

    assert job["status"] == "partially_succeeded", job
    assert targets[dropped]["error"]["code"] == "DestinationNotAllowed"
    assert launch_permission_accounts(aws_double, image.image_id) == {allowed}


async def test_a_revoke_may_take_access_back_from_a_destination_no_longer_allowed(
    service: Service,
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    [dropped] = new_account_ids(1)
    shared = await service.post_job(image_id=image.image_id, account_ids=[dropped])
    assert (await service.wait_for(shared.json()["id"]))["status"] == "succeeded"

    async with other_app(service, allowed_destinations=["111111111111"]) as client:
        client.headers.update(bearer(WRITER_TOKEN))
        refused = await client.post(
            "/v1/jobs",
            json={
                "action": "share",
                "image_id": image.image_id,
                "region": REGION,
                "account_ids": [dropped],
            },
        )
        revoked = await client.post(
            "/v1/jobs",
            json={
                "action": "revoke",
                "image_id": image.image_id,
                "region": REGION,
                "account_ids": [dropped],
            },
        )

    assert refused.status_code == 422
    assert revoked.status_code == 202, revoked.text
    job = await service.wait_for(revoked.json()["id"])
    assert job["status"] == "succeeded"
    assert launch_permission_accounts(service.double, image.image_id) == set()
