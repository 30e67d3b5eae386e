"""Scale-out: one API process and several `amishare worker` processes on one PostgreSQL database.

Twenty share jobs of thirty destinations each: every destination is done exactly once, each
AWS modification lands once per job (the same one again only if a job is taken over), edits of
one KMS key never interleave across processes and jobs on one image never overlap.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import datetime

import pytest

from tests.conftest import new_account_ids
from tests.scale.conftest import (
    Cluster,
    current_policy_accounts,
    key_policy_puts,
    launch_permission_accounts,
    launch_permission_adds,
    seed_images,
    snapshot_adds,
    successful_mutations,
)

JOBS = 20
DESTINATIONS = 30
IMAGES = 16  # jobs 16..19 are second jobs on images 0..3: per-image serialization is exercised
KEYS = 4  # five jobs per key: per-key serialization across processes is exercised


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.mark.slow
async def test_twenty_jobs_on_two_workers_do_every_destination_exactly_once(
    cluster: Cluster,
) -> None:
    await cluster.start_api()
    workers = await cluster.start_workers(2)
    images = await asyncio.to_thread(seed_images, cluster.double, IMAGES, KEYS)
    since = len(cluster.double.requests())
    plan = [
        # (image, accounts, verify): every fifth job verifies from inside its destinations.
        (images[j % IMAGES], new_account_ids(DESTINATIONS), j % 5 == 0)
        for j in range(JOBS)
    ]

    job_ids = []
    for image, accounts, verify in plan:  # in order: jobs on one image run in this order
        job_ids.append(await cluster.share(image.image_id, accounts, verify=verify))
    jobs = await cluster.wait_for(job_ids, timeout=150)

    # Every job succeeded, each of its destinations once. Nothing crashed, so each job ran in
    # one attempt, unless a lease was lost on a starved machine: then another worker took the
    # job over and re-applied the same changes, and that is all that may repeat (below).
    attempts = {job["id"]: job["attempts"] for job in jobs}
    for job in jobs:
        assert job["status"] == "succeeded", job
        assert job["progress"]["succeeded"] == DESTINATIONS, job
    for job_id, (_image, accounts, _verify) in zip(job_ids, plan, strict=True):
        targets = await cluster.targets(job_id)
        assert sorted(t["principal"] for t in targets) == sorted(accounts)
        assert {(t["status"], t["step"]) for t in targets} == {("succeeded", "ledger")}
        assert {t["attempts"] for t in targets} <= set(range(1, attempts[job_id] + 1))

    # The ledger: exactly 20 x 30 shares, each (image, destination) once, by the right job.
    shares = await cluster.shares()
    assert len(shares) == JOBS * DESTINATIONS
    expected = {
        (image.image_id, account): job_id
        for job_id, (image, accounts, _) in zip(job_ids, plan, strict=True)
        for account in accounts
    }
    assert {(s["image_id"], s["principal"]): s["job_id"] for s in shares} == expected

    # Both processes took jobs (the database is the only coordinator), each claim once.
    claims = Counter(job for worker in workers for job in worker.claimed())
    assert all(worker.claimed() for worker in workers), cluster.logs()
    assert claims == attempts, "a job was claimed without its attempt being counted"

    # AWS: one launch-permission call, one call per snapshot (again, with the same principals,
    # only in a job taken over) and one key-policy write per job.
    records = cluster.double.requests(since)
    landed = successful_mutations(records)
    assert set(Counter(r["action"] for r in landed)) == {
        "ModifyImageAttribute",
        "ModifySnapshotAttribute",
        "PutKeyPolicy",
    }
    launch_calls = Counter(
        launch_permission_adds(r) for r in landed if r["action"] == "ModifyImageAttribute"
    )
    snapshot_calls = Counter(
        snapshot_adds(r) for r in landed if r["action"] == "ModifySnapshotAttribute"
    )
    for job_id, (image, accounts, _) in zip(job_ids, plan, strict=True):
        once_per_attempt = range(1, attempts[job_id] + 1)
        assert launch_calls[(image.image_id, frozenset(accounts))] in once_per_attempt
        assert snapshot_calls[(image.snapshot_ids[0], frozenset(accounts))] in once_per_attempt
    assert launch_calls.total() == snapshot_calls.total() <= sum(attempts.values())
    for image in images:
        wanted = {a for i, accounts, _ in plan if i == image for a in accounts}
        assert launch_permission_accounts(cluster.double, image.image_id) == wanted

    # Verification ran for the verifying jobs only: one AssumeRole per destination (and attempt).
    assumed = Counter(
        r["params"]["RoleArn"].split(":")[4]
        for r in records
        if r["action"] == "AssumeRole" and r["status"] < 400
    )
    for job_id, (_, accounts, verify) in zip(job_ids, plan, strict=True):
        for account in accounts:
            assert assumed[account] in (range(1, attempts[job_id] + 1) if verify else (0,))

    # Per-key serialization: every PutKeyPolicy kept what the one before it had put (no lost
    # update between processes), and the key ends with exactly its five jobs' destinations.
    puts = key_policy_puts(records)
    for index in range(KEYS):
        image = images[index]
        sequence = puts[image.key_arn]
        assert len(sequence) == JOBS // KEYS
        for before, after in itertools.pairwise(sequence):
            assert before < after, "a key policy edit was lost: edits interleaved"
        wanted = {a for i, accounts, _ in plan if i.key_arn == image.key_arn for a in accounts}
        assert sequence[-1] == wanted
        assert current_policy_accounts(cluster.double, image.key_id) == wanted

    # Per-image serialization: the second job on an image started after the first finished.
    by_id = {job["id"]: job for job in jobs}
    for second in range(IMAGES, JOBS):
        first = by_id[job_ids[second - IMAGES]]
        later = by_id[job_ids[second]]
        assert _time(later["started_at"]) >= _time(first["finished_at"]), (first, later)
