"""A worker killed while the destinations' copies are pending: the job resumes on another worker
and ends with exactly one copy per destination."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.conftest import new_account_ids
from tests.scale.conftest import Cluster, seed_images

COPY_SECONDS = 4


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
    copies = Counter(
        r["account"]
        for r in cluster.double.requests(since)
        if r["action"] == "CopyImage" and r["status"] < 400 and not r["fault"]
    )
    assert copies == dict.fromkeys(accounts, 1)
    targets = await cluster.targets(job_id)
    assert {t["status"] for t in targets} == {"succeeded"}
    assert len({t["copied_image_id"] for t in targets}) == len(accounts)
