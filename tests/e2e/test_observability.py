"""Metrics, the audit trail and logs, watched through a real run."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.logs import JsonFormatter, WorkContextFilter, configure_logging
from app.sandbox import seed
from tests.conftest import READER_TOKEN, WRITER_TOKEN, Service, new_account_ids


async def scrape(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = await service.client.get("/metrics", headers={"Authorization": ""})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def test_metrics_move_as_a_job_runs(service: Service) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    before = await scrape(service)

    answer = await service.post_job(image_id=image.image_id, account_ids=new_account_ids(3))
    await service.wait_for(answer.json()["id"])
    after = await scrape(service)

    launch = ("amishare_aws_calls_total", (("api", "ec2:ModifyImageAttribute"), ("outcome", "ok")))
    assert after[launch] == before.get(launch, 0) + 1
    succeeded = ("amishare_jobs", (("status", "succeeded"),))
    assert after[succeeded] == before[succeeded] + 1
    finished = ("amishare_jobs_finished_total", (("action", "share"), ("status", "succeeded")))
    assert after[finished] == before.get(finished, 0) + 1
    created = ("amishare_jobs_created_total", (("action", "share"),))
    assert after[created] == before.get(created, 0) + 1
    targets = ("amishare_targets", (("status", "succeeded"),))
    assert after[targets] == before[targets] + 3
    latency = ("amishare_aws_call_seconds_count", (("api", "sts:AssumeRole"),))
    assert after[latency] >= before.get(latency, 0) + 3
    assert ("amishare_queue_depth", ()) in after
    assert ("amishare_worker_leases", ()) in after
    # The event loop's watch ticks every 0.1 s while the job runs.
    watched = ("amishare_event_loop_lag_seconds_count", ())
    assert after[watched] > before.get(watched, 0)
    assert after[("amishare_event_loop_lag_max_seconds", ())] >= 0


@pytest.mark.parametrize(
    ("kms_access", "refusal"),
    [("key_policy", "MalformedPolicyDocumentException"), ("grant", "InvalidArnException")],
)
async def test_audit_events_list_every_aws_modification_of_the_job(
    service: Service, kms_access: str, refusal: str
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id, snapshot_count=2)
    accounts = new_account_ids(4)
    service.double.set_unknown_accounts([accounts[1]])  # one refused change is audited too
    since = len(service.double.requests())

    answer = await service.post_job(
        image_id=image.image_id, account_ids=accounts, kms_access=kms_access
    )
    job = await service.wait_for(answer.json()["id"])
    events = (await service.client.get(f"/v1/jobs/{job['id']}/events")).json()["items"]

    mutations = [r for r in service.double.requests(since) if r.mutating]
    assert len(events) == len(mutations)
    by_request = sorted((f"{r.service}:{r.action}", r.status < 400) for r in mutations)
    by_event = sorted((e["api"], e["outcome"] == "ok") for e in events)
    assert by_event == by_request
    refused = [e for e in events if e["outcome"] != "ok"]
    assert refused and all(e["request_id"] for e in events)
    assert {e["outcome"] for e in refused} == {refusal}
    reader = {"Authorization": f"Bearer {READER_TOKEN}"}
    paged = await service.client.get(
        f"/v1/jobs/{job['id']}/events", params={"limit": 2}, headers=reader
    )
    assert len(paged.json()["items"]) == 2 and paged.json()["next_cursor"]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The service's own logging set-up (JSON, botocore quiet), captured."""
    configure_logging("DEBUG", "json")
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(WorkContextFilter())
    root.handlers = [handler]
    yield stream
    root.handlers = []
    root.setLevel(logging.WARNING)


async def test_logs_carry_job_ids_and_never_a_secret(
    service: Service, json_log: io.StringIO
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    accounts = new_account_ids(3)
    service.double.set_faults(deny_assume_role_into=[accounts[0]])
    answer = await service.post_job(image_id=image.image_id, account_ids=accounts)
    job = await service.wait_for(answer.json()["id"])
    await service.client.get("/v1/jobs", headers={"Authorization": "Bearer wrong-token"})

    text = json_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    job_lines = [line for line in lines if line.get("job_id") == job["id"]]
    assert job_lines, text[:2000]
    changes = [line for line in job_lines if line["message"] == "aws change"]
    assert changes and all(line["aws_request_id"] for line in changes)
    refused = [line for line in job_lines if line.get("destination") == accounts[0]]
    assert refused and refused[0]["code"] == "DestinationRoleUnavailable"
    for secret in (WRITER_TOKEN, READER_TOKEN, "testing-secret-key", "wrong-token"):
        assert secret not in text


def test_grafana_dashboard_uses_only_metrics_the_service_exports() -> None:
    import re
    from pathlib import Path

    from app.metrics import Metrics

    dashboard = json.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text()
    )
    exported = {
        sample_name
        for family in Metrics().registry.collect()
        for sample_name in (family.name, f"{family.name}_total", f"{family.name}_bucket")
    }
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"amishare_[a-z_]+", target["expr"])
    }
    assert used and used <= exported, used - exported
