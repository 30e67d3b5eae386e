"""The database goes away for a while, under the API and the workers, and comes back.

A TCP proxy between every process and PostgreSQL drops every connection and refuses new ones
for longer than a lease; meanwhile the API answers 503 problem+json (never 500; a job's status
once its remembered answer is older than the status cache's bound), /readyz is 503,
the workers back off, and once the database is back every accepted job finishes, each
destination once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import new_account_ids
from tests.scale.conftest import (
    LEASE_SECONDS,
    Cluster,
    TcpProxy,
    seed_images,
    successful_mutations,
    via_proxy,
)

JOBS = 6
DESTINATIONS = 10
OUTAGE_SECONDS = LEASE_SECONDS + 3  # longer than a lease: leases run out during the outage


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = answer.json()
    assert problem["status"] == 503
    assert set(problem) - {"errors"} == {"type", "title", "status", "detail"}
    for leak in ("Traceback", "asyncpg", "SELECT", "INSERT", "postgres"):
        assert leak not in answer.text


async def wait_status(client: httpx.AsyncClient, path: str, status: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (answer := await client.get(path)).status_code != status:
        assert time.monotonic() < deadline, f"{path}: {answer.status_code} {answer.text}"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_a_database_outage_is_503_and_loses_no_job(
    postgres_proxy: TcpProxy, cluster: Cluster
) -> None:
    through_proxy = via_proxy(cluster.database_url, postgres_proxy)
    await cluster.start_api(database_url=through_proxy)
    workers = await cluster.start_workers(2, AMISHARE_DATABASE_URL=through_proxy)
    images = await asyncio.to_thread(seed_images, cluster.double, JOBS + 1)
    cluster.double.set_faults(latency_ms=100)
    plan = [(image, new_account_ids(DESTINATIONS)) for image in images[:JOBS]]
    job_ids = [
        await cluster.share(image.image_id, accounts, verify=index % 2 == 0)
        for index, (image, accounts) in enumerate(plan)
    ]
    await cluster.wait_until(job_ids[0], lambda ts: ts[0]["status"] != "pending", timeout=30)

    postgres_proxy.cut()
    cut_at = time.monotonic()
    await wait_status(cluster.client, "/readyz", 503, timeout=10)
    assert_unavailable(await cluster.client.get("/readyz"))
    refused = await cluster.post_job(image_id=images[JOBS].image_id, account_ids=["210987654321"])
    assert_unavailable(refused)
    # A job's status may come from memory while it is younger than the status cache's bound
    # (AMISHARE_STATUS_CACHE_SECONDS, 0.25 s); after that it is a 503 like everything else.
    await wait_status(cluster.client, f"/v1/jobs/{job_ids[0]}", 503, timeout=5)
    assert_unavailable(await cluster.client.get(f"/v1/jobs/{job_ids[0]}"))
    assert_unavailable(await cluster.client.get("/v1/shares"))
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - cut_at)))
    assert postgres_proxy.refused > 0, "nobody tried the database during the outage"
    postgres_proxy.restore()

    await wait_status(cluster.client, "/readyz", 200, timeout=15)
    late_accounts = new_account_ids(DESTINATIONS)
    late_id = await cluster.share(images[JOBS].image_id, late_accounts, verify=False)
    jobs = await cluster.wait_for([*job_ids, late_id], timeout=90)

    for job in jobs:
        assert job["status"] == "succeeded", job
    assert all(worker.alive() for worker in workers), cluster.logs()
    shares = await cluster.shares()
    expected = {(image.image_id, a) for image, accounts in plan for a in accounts}
    expected |= {(images[JOBS].image_id, a) for a in late_accounts}
    got = [(s["image_id"], s["principal"]) for s in shares]
    assert sorted(got) == sorted(expected)  # every destination once; the refused job not at all
    assert "210987654321" not in {s["principal"] for s in shares}


@pytest.mark.slow
async def test_a_database_that_stops_answering_for_longer_than_a_lease_runs_no_job_twice(
    postgres_proxy: TcpProxy, cluster: Cluster
) -> None:
    """A partition: connections stay open but nothing gets through. /readyz says 503 within
    seconds; what was in flight waits, then goes on. With one worker, nobody else may take a job
    over: the worker must not claim again the jobs it is running although their leases ran out."""
    through_proxy = via_proxy(cluster.database_url, postgres_proxy)
    await cluster.start_api(database_url=through_proxy)
    (worker,) = await cluster.start_workers(1, AMISHARE_DATABASE_URL=through_proxy)
    images = await asyncio.to_thread(seed_images, cluster.double, 4)
    since = len(cluster.double.requests())
    cluster.double.set_faults(latency_ms=100)
    plan = [(image, new_account_ids(DESTINATIONS)) for image in images]
    job_ids = [
        await cluster.share(image.image_id, accounts, verify=True) for image, accounts in plan[:3]
    ]
    await cluster.wait_until(job_ids[-1], lambda ts: ts[0]["status"] != "pending", timeout=30)

    postgres_proxy.pause()
    paused_at = time.monotonic()
    started = time.monotonic()
    assert_unavailable(await cluster.client.get("/readyz"))
    assert time.monotonic() - started < 8  # /readyz gives up after 3 s (and 2 s to close)
    # A job submitted during the partition waits with it, and is accepted once it heals.
    image, accounts = plan[3]
    submitted = asyncio.create_task(cluster.post_job(image_id=image.image_id, account_ids=accounts))
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - paused_at)))
    postgres_proxy.resume()

    answer = await submitted
    assert answer.status_code in (202, 503), answer.text
    if answer.status_code == 202:
        job_ids.append(answer.json()["id"])
    jobs = await cluster.wait_for(job_ids, timeout=90)

    for job in jobs:
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1, (job, worker.tail())
    assert sorted(worker.claimed()) == sorted(job_ids)
    landed = successful_mutations(cluster.double.requests(since))
    launches = Counter(
        r["params"]["ImageId"] for r in landed if r["action"] == "ModifyImageAttribute"
    )
    assert launches == {job["image_id"]: 1 for job in jobs}
    shares = await cluster.shares()
    assert len(shares) == len(jobs) * DESTINATIONS
