"""Workers that die: SIGKILL mid-job, and a job that kills every worker that runs it."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import new_account_ids
from tests.scale.conftest import (
    LEASE_SECONDS,
    Cluster,
    current_policy_accounts,
    launch_permission_accounts,
    launch_permission_adds,
    seed_images,
    successful_mutations,
)

DESTINATIONS = 30
# 150 ms per AWS call and 4 destinations verified at a time: a job runs for several seconds,
# so that it is reliably mid-flight when its worker is killed.
SLOW = {"AMISHARE_TARGET_CONCURRENCY": "4"}
LATENCY_MS = 150


def verifying(targets: list[dict[str, Any]]) -> bool:
    """Source-side grants are done and destinations are being verified: mid-job."""
    return any(t["step"] == "verify" for t in targets)


@pytest.mark.slow
async def test_a_worker_killed_mid_job_is_taken_over_after_its_lease_and_the_job_succeeds(
    cluster: Cluster,
) -> None:
    await cluster.start_api()
    workers = await cluster.start_workers(2, **SLOW)
    (image,) = await asyncio.to_thread(seed_images, cluster.double, 1)
    since = len(cluster.double.requests())
    cluster.double.set_faults(latency_ms=LATENCY_MS)
    accounts = new_account_ids(DESTINATIONS)

    job_id = await cluster.share(image.image_id, accounts, verify=True)
    await cluster.wait_until(job_id, verifying, timeout=60)
    victim = await cluster.holder(job_id)
    victim.kill()
    killed_at = datetime.now(UTC)
    (survivor,) = [w for w in workers if w is not victim]

    (job,) = await cluster.wait_for([job_id], timeout=90)

    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2, job
    # The survivor took it over, once the lease had run out (renewed at most a third of a lease
    # before the kill).
    (claim,) = [e for e in survivor.events("job claimed") if e["job_id"] == job_id]
    waited = (datetime.fromisoformat(claim["time"]) - killed_at).total_seconds()
    assert waited >= LEASE_SECONDS * 2 / 3 - 0.5, waited
    targets = await cluster.targets(job_id)
    assert {(t["status"], t["attempts"]) for t in targets} == {("succeeded", 2)}

    # Every destination is in the ledger once, shared by this job.
    shares = await cluster.shares(image_id=image.image_id)
    assert sorted(s["principal"] for s in shares) == sorted(accounts)
    assert {s["job_id"] for s in shares} == {job_id}

    # AWS: the resumed job read what the first attempt had given and sent none of it again:
    # the key policy already named every destination, and the image and its snapshots already
    # had their permissions.
    landed = successful_mutations(cluster.double.requests(since))
    actions = Counter(r["action"] for r in landed)
    assert actions["PutKeyPolicy"] == 1
    assert actions["ModifyImageAttribute"] == 1
    assert actions["ModifySnapshotAttribute"] == len(image.snapshot_ids)
    assert {launch_permission_adds(r) for r in landed if r["action"] == "ModifyImageAttribute"} == {
        (image.image_id, frozenset(accounts))
    }
    assert launch_permission_accounts(cluster.double, image.image_id) == set(accounts)
    assert current_policy_accounts(cluster.double, image.key_id) == set(accounts)


@pytest.mark.slow
async def test_a_job_that_kills_every_worker_stops_after_max_attempts(cluster: Cluster) -> None:
    cluster.settings["AMISHARE_MAX_JOB_ATTEMPTS"] = "2"
    await cluster.start_api()
    (image,) = await asyncio.to_thread(seed_images, cluster.double, 1)
    cluster.double.set_faults(latency_ms=LATENCY_MS)
    accounts = new_account_ids(DESTINATIONS)
    job_id = await cluster.share(image.image_id, accounts, verify=True)

    # Each worker that runs the job dies in the middle of it (as a poison job would kill it).
    for attempt in (1, 2):
        worker = await cluster.start_worker(f"doomed-{attempt}", **SLOW)

        def mid_attempt(targets: list[dict[str, Any]], attempt: int = attempt) -> bool:
            return verifying(targets) and {t["attempts"] for t in targets} == {attempt}

        await cluster.wait_until(job_id, mid_attempt, timeout=60)
        assert (await cluster.job_row(job_id))["attempts"] == attempt
        assert await cluster.holder(job_id) is worker
        worker.kill()

    since = len(cluster.double.requests())
    last = await cluster.start_worker("last", **SLOW)
    (job,) = await cluster.wait_for([job_id], timeout=60)

    assert job["status"] == "failed", job
    assert job["error"]["code"] == "TooManyAttempts", job
    assert job["attempts"] == 3
    assert job_id in last.claimed()
    targets = await cluster.targets(job_id)
    assert {t["status"] for t in targets} == {"failed"}
    assert {t["error"]["code"] for t in targets} == {"TooManyAttempts"}
    # The third claim did not run the job: no AWS call at all after the second death.
    assert [r for r in cluster.double.requests(since) if r["mutating"]] == []
    # What the dead attempts gave landed on AWS and is in the ledger, for a revoke to take back.
    recorded = await cluster.shares(image_id=image.image_id)
    assert {s["principal"] for s in recorded} == set(accounts)
    revoke_id = await cluster.post_job(
        action="revoke", image_id=image.image_id, account_ids=accounts
    )
    assert revoke_id.status_code == 202, revoke_id.text
    (revoked,) = await cluster.wait_for([revoke_id.json()["id"]], timeout=60)
    assert revoked["status"] == "succeeded", revoked
    assert await cluster.shares(image_id=image.image_id) == []
    assert launch_permission_accounts(cluster.double, image.image_id) == set()
