"""AWS misbehaving, injected at the HTTP layer of the double (botocore's real retries run):
latency, throttling and 5xx are retried within a bounded budget; a permanent refusal fails only
the destination it concerns, with its code."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.conftest import new_account_ids
from tests.scale.conftest import (
    Cluster,
    launch_permission_accounts,
    launch_permission_adds,
    seed_images,
    successful_mutations,
)

JOBS = 4
DESTINATIONS = 15
# Every AWS action a share job calls.
FAULTY_ACTIONS = [
    "AssumeRole",
    "DescribeImages",
    "DescribeSnapshots",
    "DescribeKey",
    "GetKeyPolicy",
    "PutKeyPolicy",
    "ModifySnapshotAttribute",
    "ModifyImageAttribute",
]


@pytest.mark.slow
async def test_throttling_and_5xx_are_retried_and_a_denied_destination_fails_alone(
    cluster: Cluster,
) -> None:
    await cluster.start_api()
    await cluster.start_workers(2)
    images = await asyncio.to_thread(seed_images, cluster.double, JOBS, 2)
    since = len(cluster.double.requests())
    plan = [(image, new_account_ids(DESTINATIONS)) for image in images]
    # In the last job, one destination's own calls are denied (so its verification is), and
    # the destination role of another cannot be assumed.
    denied, unassumable = plan[-1][1][3], plan[-1][1][11]
    cluster.double.set_faults(
        latency_ms=20,
        throttle_rate=0.2,
        throttle_all_calls=True,  # reads too: the source's and the destinations' own
        error_rate=0.05,
        actions=FAULTY_ACTIONS,
        deny_accounts=[denied],
        deny_assume_role_into=[unassumable],
        seed=11,
    )

    job_ids = [
        await cluster.share(image.image_id, accounts, verify=index % 2 == 1)
        for index, (image, accounts) in enumerate(plan)
    ]
    jobs = await cluster.wait_for(job_ids, timeout=120)

    records = cluster.double.requests(since)
    faults = Counter(r["fault"] for r in records if r["fault"])
    assert faults["throttle"] >= 10 and faults["error"] >= 3, faults  # faults were injected
    assert [job["status"] for job in jobs[:-1]] == ["succeeded"] * (JOBS - 1), jobs
    last = jobs[-1]
    assert last["status"] == "partially_succeeded", last
    assert last["progress"]["failed"] == 2 and last["progress"]["succeeded"] == DESTINATIONS - 2

    failed = {t["principal"]: t for t in await cluster.targets(last["id"]) if t["error"]}
    assert set(failed) == {denied, unassumable}
    assert failed[denied]["error"]["code"] == "AccessDenied"
    assert failed[denied]["step"] == "verify"
    assert failed[unassumable]["error"]["code"] == "DestinationRoleUnavailable"
    assert failed[unassumable]["step"] == "verify"
    for target in failed.values():
        assert target["status"] == "failed" and target["attempts"] == 1

    # The ledger has every destination that succeeded, once, and not the two that failed.
    expected = {(image.image_id, a) for image, accounts in plan for a in accounts}
    expected -= {(plan[-1][0].image_id, denied), (plan[-1][0].image_id, unassumable)}
    shares = await cluster.shares()
    assert sorted((s["image_id"], s["principal"]) for s in shares) == sorted(expected)

    # Retried calls landed once: throttled or failed attempts never reached moto.
    landed = successful_mutations(records)
    modified = [r for r in landed if r["action"] == "ModifyImageAttribute"]
    launches = Counter(launch_permission_adds(r) for r in modified if launch_permission_adds(r)[1])
    assert launches == {(image.image_id, frozenset(accounts)): 1 for image, accounts in plan}
    # The two that failed verification had what the job gave them taken back.
    taken_back = [
        r["params"]["LaunchPermission"]["Remove"]
        for r in modified
        if not r["params"]["LaunchPermission"].get("Add")
    ]
    assert [{p["UserId"] for p in removed} for removed in taken_back] == [{denied, unassumable}]
    for image, accounts in plan:
        expected_launch = set(accounts) - ({denied, unassumable} if image is plan[-1][0] else set())
        assert launch_permission_accounts(cluster.double, image.image_id) == expected_launch


@pytest.mark.slow
async def test_a_throttled_assume_role_is_retried_within_the_budget(cluster: Cluster) -> None:
    cluster.settings["AMISHARE_STEP_MAX_ATTEMPTS"] = "3"
    await cluster.start_api()
    await cluster.start_workers(1)
    (image,) = await asyncio.to_thread(seed_images, cluster.double, 1)
    accounts = new_account_ids(2)
    cluster.double.set_faults(throttle_rate=1.0, throttle_all_calls=True, actions=["AssumeRole"])
    since = len(cluster.double.requests())

    job_id = await cluster.share(image.image_id, accounts, verify=True)
    await cluster.wait_for([job_id], timeout=60)

    assumed = Counter(
        r["params"]["RoleArn"].split(":")[4]
        for r in cluster.double.requests(since)
        if r["action"] == "AssumeRole"
    )
    # botocore's 3 attempts, within each of the 3 step attempts: bounded, and more than botocore's.
    assert assumed == dict.fromkeys(accounts, 9)
    targets = await cluster.targets(job_id)
    assert {t["error"]["code"] for t in targets} == {"Throttled"}
