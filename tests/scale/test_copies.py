"""A worker killed while the destinations' copies are pending: the job resumes on another worker
and ends with exactly one copy per destination."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from app.sandbox import seed
from tests.conftest import new_account_ids
from tests.scale.conftest import Cluster, seed_images

COPY_SECONDS = 4
OTHER = "eu-west-1"


def copies_pending(targets: list[dict[str, Any]]) -> bool:
    return all(t["step"] == "copy" and t["copied_image_id"] for t in targets)


@pytest.mark.slow
async def test_a_worker_killed_while_copies_are_pending_makes_no_second_copy(
    cluster: Cluster,
) -> None:
    cluster.settings["AMISHARE_COPY_POLL_SECONDS"] = "0.5"
    await cluster.start_api()
    (image,) = await asyncio.to_thread(seed_images, cluster.double, 1)
    accounts = new_account_ids(3)
    cluster.double.set_faults(copy_seconds=COPY_SECONDS)
    since = len(cluster.double.requests())
    doomed = await cluster.start_worker("doomed")
    job_id = await cluster.share(image.image_id, accounts, copy={})

    await cluster.wait_until(job_id, copies_pending, timeout=60)
    doomed.kill()
    await cluster.start_worker("next")
    (job,) = await cluster.wait_for([job_id], timeout=90)

    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    copies = Counter(r["account"] for r in landed_copies(cluster, since))
    assert copies == dict.fromkeys(accounts, 1)
    targets = await cluster.targets(job_id)
    assert {t["status"] for t in targets} == {"succeeded"}
    assert len({t["copied_image_id"] for t in targets}) == len(accounts)


@pytest.mark.slow
async def test_a_worker_killed_during_a_regional_copy_resumes_without_a_second_copy(
    cluster: Cluster,
) -> None:
    cluster.settings["AMISHARE_COPY_POLL_SECONDS"] = "0.5"
    await cluster.start_api()
    (image,) = await asyncio.to_thread(seed_images, cluster.double, 1)
    other_key = await asyncio.to_thread(seed.create_customer_key, cluster.double.url, region=OTHER)
    accounts = new_account_ids(2)
    cluster.double.set_faults(copy_seconds=COPY_SECONDS)
    since = len(cluster.double.requests())
    doomed = await cluster.start_worker("doomed")
    job_id = await cluster.share(
        image.image_id,
        accounts,
        regions=[OTHER],
        region_kms_key_ids={OTHER: other_key.key_arn},
    )

    await wait_for_a_copy(cluster, since)
    doomed.kill()
    await cluster.start_worker("next")
    (job,) = await cluster.wait_for([job_id], timeout=90)

    assert job["status"] == "succeeded", job
    assert len(landed_copies(cluster, since)) == 1
    targets = await cluster.targets(job_id)
    assert len(targets) == 4 and {t["status"] for t in targets} == {"succeeded"}


async def wait_for_a_copy(cluster: Cluster, since: int) -> None:
    """Until the source's CopyImage has landed (the copy is then pending for a while)."""
    for _ in range(600):
        if landed_copies(cluster, since):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no CopyImage within 60 s")


def landed_copies(cluster: Cluster, since: int) -> list[dict[str, Any]]:
    return [
        r
        for r in cluster.double.requests(since)
        if r["action"] == "CopyImage" and r["status"] < 400 and not r["fault"]
    ]
