"""Every bad input of the rules in docs/api.md is a 422 problem naming the bad field, never a
job that can only fail, and never an answer with internals in it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.db.migrate import upgrade
from app.domain.regions import known_regions
from app.sandbox.aws_double import AwsDouble
from tests.conftest import (
    REGION,
    SOURCE_ACCOUNT,
    Service,
    _create_postgres_database,
    _drop_postgres_database,
    make_settings,
    serve,
)

PROBLEM_JSON = "application/problem+json"
# What must never reach a client: stack traces, SQL, the AWS SDK's internals.
LEAKS = ("Traceback", 'File "', "sqlalchemy", "botocore", "aiobotocore", "asyncpg", "sqlite3")

ORGANIZATION = "arn:aws:organizations::111111111111:organization/o-abcdefghij"
OU = "arn:aws:organizations::111111111111:ou/o-abcdefghij/ou-ab12-cdefghij"
NO_SUCH_IMAGE = "ami-0000000000000dead"
DROP = object()  # a case that removes the field from the valid body
# Characters no label may hold: control (Cc), format (Cf), separators (Zl, Zp), surrogates,
# private use, unassigned.
UNSAFE_CHARACTERS = [
    pytest.param("\x00", id="nul"),
    pytest.param("\x1b", id="esc"),
    pytest.param("\r", id="cr"),
    pytest.param("\n", id="lf"),
    pytest.param("\t", id="tab"),
    pytest.param("\x7f", id="del"),
    pytest.param("\x85", id="next-line"),
    pytest.param("\u202a", id="left-to-right-embedding"),
    pytest.param("\u202e", id="right-to-left-override"),
    pytest.param("\u2066", id="left-to-right-isolate"),
    pytest.param("\u2069", id="pop-directional-isolate"),
    pytest.param("\u200b", id="zero-width-space"),
    pytest.param("\u200f", id="right-to-left-mark"),
    pytest.param("\ufeff", id="bom"),
    pytest.param("\u2028", id="line-separator"),
    pytest.param("\u2029", id="paragraph-separator"),
    pytest.param("\ud800", id="surrogate"),
    pytest.param("\ue000", id="private-use"),
    pytest.param("\U000f0000", id="private-use-plane-15"),
    pytest.param("\u0378", id="unassigned"),
    pytest.param("\uffff", id="noncharacter"),
]


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    """An RFC 9457 answer with `status`; for a 422, its `errors` name `field`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert set(body) - {"errors"} == {"type", "title", "status", "detail"}, body
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    lowered = response.text.lower()
    for leak in LEAKS:
        assert leak.lower() not in lowered, f"{leak!r} in {response.text}"
    if field is not None:
        assert isinstance(body.get("errors"), list) and body["errors"], body
        named = [error["field"] for error in body["errors"]]
        assert field in named, f"{field!r} not among {named}"
        for error in body["errors"]:
            assert error["message"], error
    return body


def valid_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": "share",
        "image_id": "ami-0123456789abcdef0",
        "region": REGION,
        "account_ids": ["222222222222"],
    }
    for name, value in changes.items():
        if value is DROP:
            body.pop(name, None)
        else:
            body[name] = value
    return body


@dataclass
class Api:
    """One app for the whole module (validation needs no fresh database per test)."""

    client: httpx.AsyncClient
    database_url: str
    double: AwsDouble

    @asynccontextmanager
    async def other_app(self, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        """A second app on the same database with other settings, and no worker."""
        settings = make_settings(self.database_url, self.double, embedded_worker=False, **overrides)
        clients = serve(settings)
        client = await anext(clients)
        try:
            yield client
        finally:
            with suppress(StopAsyncIteration):  # the app's lifespan ends, its gateway closes
                await anext(clients)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def api(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    aws_double: AwsDouble,
) -> AsyncIterator[Api]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('validation') / 'amishare.db'}"
    else:
        url = await _create_postgres_database()
    try:
        await asyncio.to_thread(upgrade, url)
        # No worker: these requests must be refused before any job exists to work on.
        async for client in serve(make_settings(url, aws_double, embedded_worker=False)):
            yield Api(client, url, aws_double)
    finally:
        if request.param == "postgresql":
            await _drop_postgres_database(url)


BAD_BODIES = [
    pytest.param({"image_id": "ami-123"}, "image_id", id="image-id-too-short"),
    pytest.param({"image_id": "ami-0123456789ABCDEF0"}, "image_id", id="image-id-upper-case"),
    pytest.param({"image_id": "snap-0123456789abcdef0"}, "image_id", id="image-id-not-an-ami"),
    pytest.param({"image_id": DROP}, "image_id", id="image-id-missing"),
    pytest.param({"image_id": 12345678}, "image_id", id="image-id-a-number"),
    pytest.param({"region": "us_east_1"}, "region", id="region-malformed"),
    pytest.param({"region": "US-EAST-1"}, "region", id="region-upper-case"),
    pytest.param({"region": "mars"}, "region", id="region-made-up"),
    pytest.param({"region": "us-east-1\n"}, "region", id="region-newline"),
    pytest.param({"region": DROP}, "region", id="region-missing"),
    pytest.param({"region": "zz-fake-9"}, "region", id="region-unknown-to-botocore"),
    pytest.param({"region": "us-east-99"}, "region", id="region-well-formed-but-unknown"),
    pytest.param({"region": "r" * 10_000}, "region", id="region-huge"),
    pytest.param(
        {"account_ids": ["222222222222", "22222222222"]}, "account_ids[1]", id="account-11-digits"
    ),
    pytest.param(
        {"account_ids": ["222222222222", "2222222222222"]},
        "account_ids[1]",
        id="account-13-digits",
    ),
    pytest.param({"account_ids": ["22222222222a"]}, "account_ids[0]", id="account-not-numeric"),
    pytest.param({"account_ids": [" 222222222222"]}, "account_ids[0]", id="account-with-space"),
    pytest.param({"account_ids": [222222222222]}, "account_ids[0]", id="account-a-number"),
    pytest.param({"account_ids": ["222222222222\n"]}, "account_ids[0]", id="account-newline"),
    pytest.param({"account_ids": ["\u0662" * 12]}, "account_ids[0]", id="account-arabic-digits"),
    pytest.param({"account_ids": ["\uff12" * 12]}, "account_ids[0]", id="account-wide-digits"),
    pytest.param({"region": "us-east-\u0661"}, "region", id="region-arabic-digit"),
    pytest.param({"account_ids": "222222222222"}, "account_ids", id="account-ids-not-a-list"),
    pytest.param({"source_account_id": "1234"}, "source_account_id", id="source-malformed"),
    pytest.param(
        {"organization_arns": ["arn:aws:organizations::111111111111:organization/o-short"]},
        "organization_arns[0]",
        id="organization-arn-malformed",
    ),
    pytest.param(
        {"organization_arns": [OU]}, "organization_arns[0]", id="organization-arn-is-an-ou"
    ),
    pytest.param(
        {"organization_arns": ["o-abcdefghij"]}, "organization_arns[0]", id="organization-id"
    ),
    pytest.param(
        {"organizational_unit_arns": ["arn:aws:organizations::111111111111:ou/o-abcdefghij/x"]},
        "organizational_unit_arns[0]",
        id="ou-arn-malformed",
    ),
    pytest.param(
        {"organizational_unit_arns": [OU, ORGANIZATION]},
        "organizational_unit_arns[1]",
        id="ou-arn-is-an-organization",
    ),
    pytest.param({"account_ids": [SOURCE_ACCOUNT]}, "account_ids[0]", id="own-account-as-target"),
    pytest.param(
        {"source_account_id": "333333333333", "account_ids": ["222222222222", "333333333333"]},
        "account_ids[1]",
        id="given-source-as-target",
    ),
    pytest.param({"account_ids": []}, "account_ids", id="no-destinations"),
    pytest.param({"account_ids": DROP}, "account_ids", id="no-destination-fields"),
    pytest.param(
        {"account_ids": [f"{n:012d}" for n in range(2 * 10**11, 2 * 10**11 + 1001)]},
        "account_ids",
        id="1001-accounts",
    ),
    pytest.param(
        {
            "account_ids": [f"{n:012d}" for n in range(2 * 10**11, 2 * 10**11 + 1000)],
            "organization_arns": [ORGANIZATION],
        },
        "account_ids",
        id="1001-destinations-of-two-kinds",
    ),
    pytest.param({"colour": "blue"}, "colour", id="unknown-field"),
    pytest.param({"accountIds": ["222222222222"]}, "accountIds", id="unknown-field-camel-case"),
    pytest.param({"share_snapshots": "sometimes"}, "share_snapshots", id="share-snapshots-type"),
    pytest.param({"verify": "perhaps"}, "verify", id="verify-type"),
    pytest.param({"labels": ["team"]}, "labels", id="labels-not-an-object"),
    pytest.param({"labels": {"team": 5}}, "labels.team", id="label-value-not-a-string"),
    pytest.param({"labels": {"a:b": "c"}}, "labels", id="label-key-with-colon"),
    pytest.param({"labels": {f"k{i}": "v" for i in range(51)}}, "labels", id="51-labels"),
    pytest.param({"kms_access": "everything"}, "kms_access", id="kms-access-not-in-enum"),
    pytest.param({"kms_access": "Grant"}, "kms_access", id="kms-access-wrong-case"),
    pytest.param({"action": "delete"}, "action", id="action-unknown"),
    pytest.param({"action": "SHARE"}, "action", id="action-wrong-case"),
    pytest.param({"action": DROP}, "action", id="action-missing"),
    pytest.param(
        {"action": "revoke", "copy": {"kms_key_id": None, "copy_tags": True}},
        "copy",
        id="copy-on-a-revoke",
    ),
    pytest.param(
        {"action": "revoke", "reencrypt": {"kms_key_id": "alias/builds"}},
        "reencrypt",
        id="reencrypt-on-a-revoke",
    ),
    pytest.param({"copy": {}, "kms_access": "none"}, "copy", id="copy-without-key-access"),
    pytest.param({"copy": {}, "share_snapshots": False}, "copy", id="copy-without-snapshots"),
    pytest.param({"copy": {"kms_key_id": "not a key"}}, "copy.kms_key_id", id="copy-bad-key"),
    pytest.param(
        {"reencrypt": {"kms_key_id": "alias/aws/ebs"}},
        "reencrypt.kms_key_id",
        id="reencrypt-with-an-aws-managed-key",
    ),
    pytest.param({"reencrypt": {}}, "reencrypt.kms_key_id", id="reencrypt-without-a-key"),
    pytest.param({"regions": ["zz-fake-9"]}, "regions[0]", id="regions-unknown"),
    pytest.param(
        {"regions": ["eu-west-1"]}, "region_kms_key_ids.eu-west-1", id="regions-without-a-key"
    ),
    pytest.param(
        {"regions": [REGION], "region_kms_key_ids": {REGION: "alias/k"}},
        "regions[0]",
        id="regions-naming-the-jobs-own",
    ),
    pytest.param(
        {"regions": ["cn-north-1"], "region_kms_key_ids": {"cn-north-1": "alias/k"}},
        "regions[0]",
        id="regions-in-another-partition",
    ),
    pytest.param(
        {
            "regions": ["eu-west-1"],
            "region_kms_key_ids": {"eu-west-1": "alias/k", "ap-south-1": "alias/k"},
        },
        "region_kms_key_ids.ap-south-1",
        id="region-key-for-a-region-not-listed",
    ),
    pytest.param(
        {"regions": [r for r in known_regions() if r.startswith(("us-", "eu-", "ap-"))][:21]},
        "regions",
        id="more-than-20-regions",
    ),
    pytest.param({"copy": {"colour": "red"}}, "copy.colour", id="copy-unknown-field"),
    pytest.param({"repair": True}, "repair", id="repair-on-a-share"),
    pytest.param({"action": "revoke", "prune": True}, "prune", id="prune-on-a-revoke"),
    pytest.param(
        {
            "action": "reconcile",
            "regions": ["eu-west-1"],
            "region_kms_key_ids": {"eu-west-1": "alias/k"},
        },
        "regions",
        id="regions-on-a-reconcile",
    ),
    pytest.param({"action": "reconcile", "copy": {}}, "copy", id="copy-on-a-reconcile"),
    pytest.param({"action": "reconcile", "verify": True}, "verify", id="verify-on-a-reconcile"),
    pytest.param(
        {"kms_access": "grant", "organization_arns": [ORGANIZATION]},
        "organization_arns[0]",
        id="grant-to-organization",
    ),
    pytest.param(
        {"kms_access": "grant", "organizational_unit_arns": [OU]},
        "organizational_unit_arns[0]",
        id="grant-to-ou",
    ),
]


@pytest.mark.parametrize(("changes", "field"), BAD_BODIES)
async def test_bad_job_request_is_422_naming_the_field(
    api: Api, changes: dict[str, Any], field: str
) -> None:
    before = (await api.client.get("/v1/jobs", params={"limit": 500})).json()["items"]

    response = await api.client.post("/v1/jobs", json=valid_body(**changes))

    body = assert_problem(response, 422, field)
    assert body["title"]
    after = (await api.client.get("/v1/jobs", params={"limit": 500})).json()["items"]
    assert len(after) == len(before), "a refused request must not leave a job behind"


async def test_every_bad_field_is_named_at_once(api: Api) -> None:
    response = await api.client.post(
        "/v1/jobs",
        json=valid_body(image_id="ami-x", region="nowhere", account_ids=["1", "222222222222"]),
    )

    body = assert_problem(response, 422)
    named = {error["field"] for error in body["errors"]}
    assert named == {"image_id", "region", "account_ids[0]"}  # account_ids[1] is fine


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"action": "share", ', id="truncated"),
        pytest.param(b"{'action': 'share'}", id="single-quotes"),
        pytest.param(b"not json at all", id="text"),
        pytest.param(b"[]", id="a-list"),
        pytest.param(b'"share"', id="a-string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"region": "\xff\xfe"}', id="not-utf-8"),
        pytest.param(b"\x1eE\tE\xc0", id="binary"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="100000-nested-lists"),
        pytest.param(
            b'{"labels": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001, id="100000-nested-objects"
        ),
        pytest.param(b'{"verify": ' + b"1" * 10_000 + b"}", id="integer-of-10000-digits"),
        pytest.param(b'{"labels": {"a": -' + b"9" * 10_000 + b"}}", id="negative-10000-digits"),
    ],
)
async def test_body_that_is_not_a_json_object_is_422_naming_the_body(
    api: Api, content: bytes
) -> None:
    response = await api.client.post(
        "/v1/jobs", content=content, headers={"Content-Type": "application/json"}
    )

    assert_problem(response, 422, "body")


@pytest.mark.parametrize("where", ["key", "value"])
@pytest.mark.parametrize("char", UNSAFE_CHARACTERS)
async def test_label_with_an_unsafe_character_is_422_naming_labels(
    api: Api, char: str, where: str
) -> None:
    labels = {f"te{char}am": "x"} if where == "key" else {"team": f"a{char}b"}
    before = (await api.client.get("/v1/jobs", params={"limit": 500})).json()["items"]

    # json.dumps escapes every non-ASCII character, so that a lone surrogate can be sent.
    response = await api.client.post(
        "/v1/jobs",
        content=json.dumps(valid_body(image_id=NO_SUCH_IMAGE, labels=labels)),
        headers={"Content-Type": "application/json"},
    )

    body = assert_problem(response, 422, "labels")
    assert f"U+{ord(char):04X}" in body["detail"]
    assert char not in response.text
    after = (await api.client.get("/v1/jobs", params={"limit": 500})).json()["items"]
    assert len(after) == len(before), "a refused request must not leave a job behind"


async def test_labels_in_any_script_are_accepted_and_found(api: Api) -> None:
    unique = uuid.uuid4().hex
    labels = {"team": f"café ☕ {unique}", "équipe": "基盤", "チーム": "🚀"}

    created = await api.client.post(
        "/v1/jobs", json=valid_body(image_id=NO_SUCH_IMAGE, labels=labels)
    )
    found = await api.client.get("/v1/jobs", params={"label": f"team:café ☕ {unique}"})

    assert created.status_code == 202, created.text
    assert created.json()["labels"] == labels
    assert [job["id"] for job in found.json()["items"]] == [created.json()["id"]]


async def test_unknown_region_is_422_saying_it_is_not_an_aws_region(api: Api) -> None:
    response = await api.client.post("/v1/jobs", json=valid_body(region="zz-fake-9"))

    body = assert_problem(response, 422, "region")
    message = next(e["message"] for e in body["errors"] if e["field"] == "region")
    assert message == "'zz-fake-9' is not a known AWS Region"


async def test_region_botocore_lists_is_accepted_whatever_its_shape(api: Api) -> None:
    response = await api.client.post(
        "/v1/jobs", json=valid_body(image_id=NO_SUCH_IMAGE, region="eusc-de-east-1")
    )

    assert response.status_code == 202, response.text
    assert response.json()["region"] == "eusc-de-east-1"


async def test_too_long_idempotency_key_is_422_naming_the_header(api: Api) -> None:
    response = await api.client.post(
        "/v1/jobs", json=valid_body(), headers={"Idempotency-Key": "k" * 256}
    )

    assert_problem(response, 422, "Idempotency-Key")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"limit": 0}, "limit", id="limit-0"),
        pytest.param({"limit": 501}, "limit", id="limit-501"),
        pytest.param({"limit": "ten"}, "limit", id="limit-not-a-number"),
        pytest.param({"cursor": "never-given-out"}, "cursor", id="cursor-made-up"),
        pytest.param({"cursor": "dHJ1ZQ"}, "cursor", id="cursor-json-true"),
        pytest.param({"cursor": "MS41"}, "cursor", id="cursor-json-float"),
        pytest.param({"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk5"}, "cursor", id="cursor-huge"),
        pytest.param({"cursor": "x" * 513}, "cursor", id="cursor-too-long"),
        pytest.param({"status": "done"}, "status", id="status-unknown"),
        pytest.param({"action": "delete"}, "action", id="action-unknown"),
        pytest.param({"label": "no-colon"}, "label", id="label-without-colon"),
        pytest.param({"label": ":value"}, "label", id="label-without-key"),
        pytest.param({"image_id": "ami-x"}, "image_id", id="image-id-malformed"),
        pytest.param({"image_id": "ami-\x00"}, "image_id", id="image-id-nul"),
        pytest.param({"account_id": "2222"}, "account_id", id="account-id-malformed"),
        pytest.param({"account_id": "\x00"}, "account_id", id="account-id-nul"),
        pytest.param({"limit": "1" * 10_000}, "limit", id="limit-10000-digits"),
        pytest.param({"label": "team:a\x00b"}, "label", id="label-value-nul"),
        pytest.param({"label": "te\x00am:x"}, "label", id="label-key-nul"),
        pytest.param({"label": "team:\x1b[2J"}, "label", id="label-value-esc"),
        pytest.param({"label": "team:a\r\nb"}, "label", id="label-value-crlf"),
        pytest.param({"label": "team:\u202eevil"}, "label", id="label-value-bidi-override"),
        pytest.param({"label": "te\u200bam:x"}, "label", id="label-key-zero-width"),
        pytest.param({"label": "team:\ufeff"}, "label", id="label-value-bom"),
        pytest.param({"label": "team:\u2028"}, "label", id="label-value-line-separator"),
        pytest.param({"label": "team:\ue000"}, "label", id="label-value-private-use"),
        pytest.param({"label": "k" * 129 + ":v"}, "label", id="label-key-too-long"),
        pytest.param({"label": "k:" + "v" * 257}, "label", id="label-value-too-long"),
    ],
)
async def test_bad_job_list_query_is_422_naming_the_parameter(
    api: Api, params: dict[str, Any], field: str
) -> None:
    response = await api.client.get("/v1/jobs", params=params)

    assert_problem(response, 422, field)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"limit": 0}, "limit", id="limit-0"),
        pytest.param({"limit": 501}, "limit", id="limit-501"),
        pytest.param({"cursor": "never-given-out"}, "cursor", id="cursor-made-up"),
        pytest.param({"cursor": "LTE"}, "cursor", id="cursor-negative"),
        pytest.param({"status": "done"}, "status", id="status-unknown"),
    ],
)
async def test_bad_target_list_query_is_422_naming_the_parameter(
    api: Api, params: dict[str, Any], field: str
) -> None:
    created = await api.client.post("/v1/jobs", json=valid_body(image_id=NO_SUCH_IMAGE))
    assert created.status_code == 202, created.text

    response = await api.client.get(f"/v1/jobs/{created.json()['id']}/targets", params=params)

    assert_problem(response, 422, field)


@pytest.mark.parametrize("job_id", ["job-%00", "job%20with%20spaces", "x" * 65])
async def test_malformed_job_id_is_422_naming_it(api: Api, job_id: str) -> None:
    response = await api.client.get(f"/v1/jobs/{job_id}")

    assert_problem(response, 422, "job_id")


async def test_verify_without_a_destination_role_is_422(api: Api) -> None:
    async with api.other_app(destination_role_name=None) as client:
        response = await client.post("/v1/jobs", json=valid_body(verify=True))

        body = assert_problem(response, 422, "verify")
        assert "AMISHARE_DESTINATION_ROLE_NAME" in body["detail"]


async def test_copy_without_a_destination_role_is_422(api: Api) -> None:
    async with api.other_app(destination_role_name=None) as client:
        response = await client.post("/v1/jobs", json=valid_body(copy={"copy_tags": True}))

        assert_problem(response, 422, "copy")


async def test_verify_false_without_a_destination_role_is_accepted(api: Api) -> None:
    async with api.other_app(destination_role_name=None) as client:
        response = await client.post(
            "/v1/jobs", json=valid_body(image_id=NO_SUCH_IMAGE, verify=False)
        )

        assert response.status_code == 202, response.text
        assert response.json()["verify"] is False


async def test_destination_outside_the_allowed_list_is_422(api: Api) -> None:
    async with api.other_app(allowed_destinations=["2222*"]) as client:
        response = await client.post(
            "/v1/jobs",
            json=valid_body(
                account_ids=["222211112222", "333311112222"], organization_arns=[ORGANIZATION]
            ),
        )

        body = assert_problem(response, 422, "account_ids[1]")
        named = {error["field"] for error in body["errors"]}
        assert named == {"account_ids[1]", "organization_arns[0]"}


async def test_destination_inside_the_allowed_list_is_accepted(api: Api) -> None:
    async with api.other_app(allowed_destinations=["2222*"]) as client:
        response = await client.post(
            "/v1/jobs", json=valid_body(image_id=NO_SUCH_IMAGE, account_ids=["222211112222"])
        )

        assert response.status_code == 202, response.text


async def test_duplicate_destinations_are_folded_into_one_target(service: Service) -> None:
    response = await service.post_job(
        image_id=NO_SUCH_IMAGE,
        account_ids=["222222222222", "444444444444", "222222222222"],
        organization_arns=[ORGANIZATION, ORGANIZATION],
    )

    assert response.status_code == 202, response.text
    assert response.json()["progress"]["total"] == 3
    job = await service.wait_for(response.json()["id"])
    assert job["progress"]["total"] == 3
    targets = await service.targets(job["id"])
    assert [(t["principal"], t["principal_type"]) for t in targets] == [
        ("222222222222", "account"),
        ("444444444444", "account"),
        (ORGANIZATION, "organization"),
    ]
    # The image does not exist: the job fails at inspection, with the reason named.
    assert job["status"] == "failed"
    assert {t["error"]["code"] for t in targets} == {"ImageNotFound"}
