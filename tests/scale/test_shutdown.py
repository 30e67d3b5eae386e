"""SIGTERM: a worker stops claiming, finishes or hands back what it runs, and exits in time."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime

import pytest

from tests.conftest import new_account_ids
from tests.scale.conftest import Cluster, seed_images
from tests.scale.test_crash import LATENCY_MS, SLOW, verifying

GRACE_SECONDS = 2.0
# A long lease: a job handed back at shutdown is taken over at once, not when this runs out.
LONG_LEASE = "30"


@pytest.mark.slow
async def test_sigterm_hands_the_job_back_within_the_grace_and_another_worker_finishes_it(
    cluster: Cluster,
) -> None:
    settings = {
        **SLOW,
        "AMISHARE_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "AMISHARE_LEASE_SECONDS": LONG_LEASE,
    }
    await cluster.start_api()
    workers = await cluster.start_workers(2, **settings)
    images = await asyncio.to_thread(seed_images, cluster.double, 2)
    cluster.double.set_faults(latency_ms=LATENCY_MS)
    accounts = new_account_ids(30)

    job_id = await cluster.share(images[0].image_id, accounts, verify=True)
    await cluster.wait_until(job_id, verifying, timeout=60)
    stopping = await cluster.holder(job_id)
    (other,) = [w for w in workers if w is not stopping]
    stopping.signal(signal.SIGTERM)
    signalled = time.monotonic()
    signalled_at = datetime.now(UTC)

    # It exits cleanly within the grace period plus a few seconds...
    assert await stopping.wait_exit(timeout=GRACE_SECONDS + 8) == 0, stopping.tail()
    assert time.monotonic() - signalled <= GRACE_SECONDS + 8
    assert stopping.events("worker stopped")
    # ...and claims nothing once told to stop: a job queued meanwhile goes to the other worker.
    late_id = await cluster.share(images[1].image_id, new_account_ids(5), verify=False)

    jobs = await cluster.wait_for([job_id, late_id], timeout=60)
    for job in jobs:
        assert job["status"] == "succeeded", job
    assert stopping.claimed() == [job_id]
    assert job_id in other.claimed() and late_id in other.claimed()
    # Handed back, not abandoned: taken over long before the 30 s lease could have run out.
    (claim,) = [e for e in other.events("job claimed") if e["job_id"] == job_id]
    taken_over = (datetime.fromisoformat(claim["time"]) - signalled_at).total_seconds()
    assert taken_over < GRACE_SECONDS + 8, taken_over
    shares = await cluster.shares(image_id=images[0].image_id)
    assert sorted(s["principal"] for s in shares) == sorted(accounts)


@pytest.mark.slow
async def test_sigterm_lets_a_job_that_ends_within_the_grace_finish(cluster: Cluster) -> None:
    await cluster.start_api()
    (worker,) = await cluster.start_workers(1, AMISHARE_SHUTDOWN_GRACE_SECONDS="20")
    (image,) = await asyncio.to_thread(seed_images, cluster.double, 1)
    cluster.double.set_faults(latency_ms=LATENCY_MS)
    accounts = new_account_ids(10)

    job_id = await cluster.share(image.image_id, accounts, verify=False)
    await cluster.wait_until(job_id, lambda ts: {t["status"] for t in ts} == {"running"}, 60)
    worker.signal(signal.SIGTERM)

    assert await worker.wait_exit(timeout=28) == 0, worker.tail()
    job = await cluster.job(job_id)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1
