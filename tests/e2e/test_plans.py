"""POST /v1/plans: what a job would change, read from AWS and the ledger, changing nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from app.sandbox import seed
from tests.api.test_auth import bearer, other_app
from tests.conftest import REGION, SOURCE_ACCOUNT, WRITER_TOKEN, Service, new_account_ids
from tests.e2e.aws_state import launch_permission_accounts, mutating_calls
from tests.e2e.test_destination_policy import assert_iam_policy, key_resources
from tests.e2e.test_revoke import run_job

OTHER = "eu-west-1"
# The contract's name for taking a grant back; the service does it with kms:RevokeGrant.
JOB_API = {"RetireGrant": "RevokeGrant"}


async def plan(service: Service, **body: Any) -> dict[str, Any]:
    body.setdefault("action", "share")
    body.setdefault("region", REGION)
    answer = await service.client.post("/v1/plans", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def job_count(service: Service) -> int:
    return len((await service.client.get("/v1/jobs", params={"limit": 500})).json()["items"])


def outcomes(result: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(t["principal"], t["region"]): t["outcome"] for t in result["targets"]}


def changes_of(result: dict[str, Any], api: str) -> list[dict[str, Any]]:
    return [c for c in result["changes"] if c["api"] == api]


def principals_of(change: dict[str, Any]) -> list[str]:
    return sorted(
        change.get("principals_added", [])
        + change.get("principals_removed", [])
        + change.get("principals", [])
        + change.get("add", [])
        + change.get("remove", [])
    )


async def test_a_plan_for_two_new_accounts_and_one_shared_changes_only_the_two(
    service: Service,
) -> None:
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=2)
    shared, *new = new_account_ids(3)
    first = await run_job(service, image_id=image.image_id, account_ids=[shared])
    assert first["status"] == "succeeded", first
    jobs_before = await job_count(service)
    since = len(double.requests())

    result = await plan(service, image_id=image.image_id, account_ids=[shared, *new])

    assert result["error"] is None
    assert outcomes(result) == {
        (shared, REGION): "no_change",
        (new[0], REGION): "change",
        (new[1], REGION): "change",
    }
    [key_change] = changes_of(result, "PutKeyPolicy")
    assert key_change["resource"] == key.key_arn
    assert key_change["principals_added"] == sorted(new)
    assert key_change["principals_removed"] == []
    assert 0 < key_change["policy_bytes_before"] < key_change["policy_bytes_after"] <= 32768
    [image_change] = changes_of(result, "ModifyImageAttribute")
    assert (image_change["resource"], image_change["add"]) == (image.image_id, sorted(new))
    snapshot_changes = changes_of(result, "ModifySnapshotAttribute")
    assert {c["resource"] for c in snapshot_changes} == set(image.snapshot_ids)
    assert all(c["add"] == sorted(new) and c["remove"] == [] for c in snapshot_changes)
    assert len(result["changes"]) == 4
    assert mutating_calls(double, since) == []
    assert await job_count(service) == jobs_before
    assert_iam_policy(result["destination_policy"])
    assert key_resources(result["destination_policy"]) == {key.key_arn}


async def test_a_plan_for_the_aws_managed_key_image_reports_the_jobs_error(
    service: Service,
) -> None:
    image = seed.create_aws_managed_key_image(service.double.url)
    since = len(service.double.requests())

    result = await plan(service, image_id=image.image_id, account_ids=new_account_ids(1))

    assert result["error"]["code"] == "AwsManagedKey"
    assert [t["outcome"] for t in result["targets"]] == ["refused"]
    assert result["changes"] == []
    assert mutating_calls(service.double, since) == []


async def test_a_revoke_plan_keeps_the_key_access_another_image_needs(service: Service) -> None:
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    other = seed.create_encrypted_image(double.url, key.key_id)
    account = new_account_ids(1)[0]
    for shared in (image, other):
        job = await run_job(service, image_id=shared.image_id, account_ids=[account])
        assert job["status"] == "succeeded", job
    since = len(double.requests())

    result = await plan(service, action="revoke", image_id=image.image_id, account_ids=[account])

    assert result["error"] is None
    assert outcomes(result) == {(account, REGION): "change"}
    assert result["kept_key_access"] == [
        {"principal": account, "kms_key_id": key.key_arn, "needed_by": [other.image_id]}
    ]
    assert changes_of(result, "PutKeyPolicy") == []
    [image_change] = changes_of(result, "ModifyImageAttribute")
    assert (image_change["add"], image_change["remove"]) == ([], [account])
    assert mutating_calls(double, since) == []
    assert account in launch_permission_accounts(double, image.image_id)


async def test_a_revoke_plan_of_what_is_not_shared_changes_nothing(service: Service) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)

    result = await plan(
        service, action="revoke", image_id=image.image_id, account_ids=new_account_ids(2)
    )

    assert result["error"] is None
    assert set(outcomes(result).values()) == {"no_change"}
    assert result["changes"] == []


@pytest.mark.parametrize("kms_access", ["key_policy", "grant"])
async def test_a_plan_then_its_job_makes_exactly_the_changes_planned(
    service: Service, kms_access: str
) -> None:
    """For a share and then for a revoke: the job's changes in the double's log, and in its
    audit trail, are the plan's."""
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=2)
    already = new_account_ids(1)
    assert (await run_job(service, image_id=image.image_id, account_ids=already))[
        "status"
    ] == "succeeded"
    accounts = [*already, *new_account_ids(3)]
    for action in ("share", "revoke"):
        body = {
            "action": action,
            "image_id": image.image_id,
            "account_ids": accounts,
            "kms_access": kms_access,
        }
        result = await plan(service, **body)
        assert result["error"] is None, result
        since = len(double.requests())

        job = await run_job(service, **body)

        assert job["status"] == "succeeded", job
        # A plan lists each resource's change once; the job makes one call of it (at most 500
        # principals a call: here fewer), and one call per grant.
        planned = Counter(
            JOB_API.get(c["api"], c["api"])
            for c in result["changes"]
            for _ in (c["principals"] if "Grant" in c["api"] else [c])
        )
        made = Counter(call.split(":", 1)[1] for call in mutating_calls(double, since))
        assert made == planned, (made, planned)
        events = (await service.client.get(f"/v1/jobs/{job['id']}/events")).json()["items"]
        assert {
            (e["api"].split(":", 1)[1], e["resource"], tuple(sorted(e["principals"])))
            for e in events
            if e["outcome"] == "ok"
        } == {
            (JOB_API.get(c["api"], c["api"]), c["resource"], tuple(principals_of(c)))
            for c in result["changes"]
            if c["api"] not in ("CreateGrant", "RetireGrant")
        } | _grant_events(result)


def _grant_events(result: dict[str, Any]) -> set[tuple[str, str, tuple[str, ...]]]:
    """A job makes (or takes back) each grant in a call of its own."""
    return {
        (JOB_API.get(c["api"], c["api"]), c["resource"], (principal,))
        for c in result["changes"]
        if c["api"] in ("CreateGrant", "RetireGrant")
        for principal in c["principals"]
    }


async def test_a_plan_in_another_region_names_the_copy_first_and_then_nothing(
    service: Service,
) -> None:
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    other = seed.create_customer_key(double.url, region=OTHER)
    account = new_account_ids(1)[0]
    body: dict[str, Any] = {
        "image_id": image.image_id,
        "account_ids": [account],
        "regions": [OTHER],
        "region_kms_key_ids": {OTHER: other.key_arn},
    }
    since = len(double.requests())

    before = await plan(service, **body)

    assert before["error"] is None
    assert outcomes(before) == {(account, REGION): "change", (account, OTHER): "change"}
    [copy] = changes_of(before, "CopyImage")
    assert copy["resource"] == image.image_id
    assert copy["region"] == OTHER
    assert copy["account"] == SOURCE_ACCOUNT
    reason = {t["region"]: t["reason"] for t in before["targets"]}[OTHER]
    assert reason and "copies" in reason
    assert mutating_calls(double, since) == []

    job = await run_job(service, **body)
    assert job["status"] == "succeeded", job
    after = await plan(service, **body)

    assert after["error"] is None
    assert set(outcomes(after).values()) == {"no_change"}
    assert after["changes"] == []
    assert key_resources(after["destination_policy"]) == {key.key_arn, other.key_arn}


async def test_a_plan_needs_the_write_scope_and_checks_input_as_a_job_does(
    service: Service,
) -> None:
    reader = {"Authorization": f"Bearer {service.settings.api_tokens[1].token}"}
    answer = await service.client.post(
        "/v1/plans",
        json={
            "action": "share",
            "image_id": "ami-0123456789abcdef0",
            "region": REGION,
            "account_ids": new_account_ids(1),
        },
        headers=reader,
    )
    assert answer.status_code == 403

    bad = await service.client.post(
        "/v1/plans",
        json={"action": "share", "image_id": "ami-x", "region": REGION, "account_ids": ["1"]},
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"image_id", "account_ids[0]"}
    reconcile = await service.client.post(
        "/v1/plans",
        json={"action": "reconcile", "image_id": "ami-12345678", "region": REGION},
    )
    assert reconcile.status_code == 422
    assert [e["field"] for e in reconcile.json()["errors"]] == ["action"]


async def test_a_plan_with_copy_lists_each_destinations_copy(service: Service) -> None:
    double = service.double
    key = seed.create_customer_key(double.url)
    image = seed.create_encrypted_image(double.url, key.key_id)
    accounts = new_account_ids(2)
    since = len(double.requests())

    result = await plan(
        service, image_id=image.image_id, account_ids=accounts, copy={"kms_key_id": None}
    )

    assert result["error"] is None
    copies = changes_of(result, "CopyImage")
    assert sorted(c["account"] for c in copies) == sorted(accounts)
    assert {(c["resource"], c["region"]) for c in copies} == {(image.image_id, REGION)}
    actions = {a for s in result["destination_policy"]["Statement"] for a in _listed(s)}
    assert "ec2:CopyImage" in actions
    assert mutating_calls(double, since) == []


def _listed(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


async def test_a_plan_with_reencrypt_names_the_source_copy_first(service: Service) -> None:
    double = service.double
    original = seed.create_aws_managed_key_image(double.url)
    cmk = seed.create_customer_key(double.url)
    [account] = new_account_ids(1)
    since = len(double.requests())

    result = await plan(
        service,
        image_id=original.image_id,
        account_ids=[account],
        reencrypt={"kms_key_id": cmk.key_arn},
    )

    assert result["error"] is None, result
    [copy] = result["changes"]
    assert (copy["api"], copy["resource"], copy["account"], copy["region"]) == (
        "CopyImage",
        original.image_id,
        SOURCE_ACCOUNT,
        REGION,
    )
    [target] = result["targets"]
    assert target["outcome"] == "change" and "copies" in (target["reason"] or "")
    assert mutating_calls(double, since) == []


async def test_a_plan_shows_a_destination_the_guardrail_refuses_as_refused(
    service: Service,
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    allowed, refused = new_account_ids(2)

    body = {
        "action": "share",
        "image_id": image.image_id,
        "region": REGION,
        "account_ids": [allowed, refused],
    }

    async with other_app(service, allowed_destinations=[allowed]) as client:
        client.headers.update(bearer(WRITER_TOKEN))
        answer = await client.post("/v1/plans", json=body)
        as_job = await client.post("/v1/jobs", json=body)

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert outcomes(result) == {(allowed, REGION): "change", (refused, REGION): "refused"}
    reason = {t["principal"]: t["reason"] for t in result["targets"]}[refused]
    assert reason and "allowed destinations" in reason
    [image_change] = changes_of(result, "ModifyImageAttribute")
    assert image_change["add"] == [allowed]
    assert as_job.status_code == 422  # the job itself is refused as a whole
