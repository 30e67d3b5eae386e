"""The `amishare` client commands against a sandbox served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from app.cli import cli
from app.client import commands
from app.client.api import AmiShareClient
from app.sandbox import seed
from app.sandbox.run import (
    DEMO_ACCOUNTS,
    OTHER_REGION,
    OTHER_REGION_KEY_ALIAS,
    SandboxInfo,
    sandbox_running,
)
from tests.conftest import new_account_ids

REGION = "us-east-1"
# The double answers at once: keep every wait short.
FAST = {
    "poll_interval_seconds": 0.05,
    "step_backoff_seconds": 0.01,
    "verify_initial_delay_seconds": 0.05,
    "verify_timeout_seconds": 5.0,
}
UNSET = object()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxInfo]:
    with sandbox_running(port=0, settings_overrides=FAST) as info:
        yield info


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "POLL_SECONDS", 0.05)


def amishare(
    sandbox: SandboxInfo, *args: str, token: object = UNSET, url: str = "", columns: int = 200
) -> Result:
    """Run the CLI in-process with AMISHARE_URL/AMISHARE_TOKEN set as a user would."""
    env: dict[str, str | None] = {
        "AMISHARE_URL": url or sandbox.url,
        "AMISHARE_TOKEN": sandbox.token if token is UNSET else token,  # type: ignore[dict-item]
        "COLUMNS": str(columns),
    }
    return CliRunner().invoke(cli, list(args), env=env)


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def image(sandbox: SandboxInfo) -> str:
    return sandbox.images.encrypted.image_id


def share_and_wait(sandbox: SandboxInfo, accounts: list[str], *extra: str) -> Result:
    return amishare(
        sandbox, "share", image(sandbox), "--region", REGION, "--to", ",".join(accounts),
        "--wait", *extra,
    )  # fmt: skip


def newest_job(sandbox: SandboxInfo) -> dict[str, Any]:
    with AmiShareClient(sandbox.url, sandbox.token) as client:
        return dict(client.list_jobs(limit=1)["items"][0])


def test_share_with_two_accounts_waits_and_exits_0(sandbox: SandboxInfo) -> None:
    accounts = new_account_ids(2)

    result = share_and_wait(sandbox, accounts, "--label", "team=cli")

    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output
    assert "2 destinations: 2 succeeded · 0 failed · 0 pending" in result.output
    assert "Failed targets" not in result.output
    shares = as_json(amishare(sandbox, "shares", "--image", image(sandbox), "--json"))
    assert {s["principal"] for s in shares["items"]} >= set(accounts)
    listed = as_json(amishare(sandbox, "jobs", "--label", "team=cli", "--json"))
    assert [job["labels"] for job in listed["items"]] == [{"team": "cli"}]


def test_malformed_account_exits_2_with_the_422_detail(sandbox: SandboxInfo) -> None:
    result = amishare(sandbox, "share", image(sandbox), "--region", REGION, "--to", "12345")

    assert result.exit_code == 2
    assert "422" in result.output
    assert "account_ids[0]" in result.output
    assert "Traceback" not in result.output


def test_json_errors_print_the_problem_document(sandbox: SandboxInfo) -> None:
    result = amishare(
        sandbox, "share", image(sandbox), "--region", REGION, "--to", "12345", "--json"
    )

    assert result.exit_code == 2
    problem = as_json(result)
    assert problem["status"] == 422
    assert [e["field"] for e in problem["errors"]] == ["account_ids[0]"]


def test_a_failing_destination_exits_1_names_its_error_and_retry_fixes_it(
    sandbox: SandboxInfo,
) -> None:
    good, broken = new_account_ids(2)
    sandbox.double.set_faults(deny_assume_role_into=[broken])
    try:
        result = share_and_wait(sandbox, [good, broken])
    finally:
        sandbox.double.set_faults()

    assert result.exit_code == 1, result.output
    assert "partially_succeeded" in result.output
    assert "Failed targets" in result.output
    failed_rows = [line for line in result.output.splitlines() if broken in line]
    assert failed_rows and "DestinationRoleUnavailable" in failed_rows[0]
    assert not [line for line in result.output.splitlines() if good in line]

    job_id = newest_job(sandbox)["id"]
    retried = amishare(sandbox, "retry", job_id, "--wait")
    assert retried.exit_code == 0, retried.output
    assert "→ succeeded" in retried.output


def test_aws_managed_key_fails_the_job_with_exit_1(sandbox: SandboxInfo) -> None:
    aws_managed = sandbox.images.aws_managed.image_id
    result = amishare(
        sandbox, "share", aws_managed, "--region", REGION, "--to", new_account_ids(1)[0], "--wait"
    )

    assert result.exit_code == 1, result.output
    assert "→ failed" in result.output
    assert "AwsManagedKey" in result.output


def test_status_json_prints_the_job_and_exits_by_outcome(sandbox: SandboxInfo) -> None:
    assert share_and_wait(sandbox, new_account_ids(1)).exit_code == 0
    job_id = newest_job(sandbox)["id"]

    result = amishare(sandbox, "status", job_id, "--json")

    assert result.exit_code == 0, result.output
    job = as_json(result)
    assert job["id"] == job_id
    assert job["status"] == "succeeded"
    assert job["progress"]["succeeded"] == 1
    table = amishare(sandbox, "status", job_id)
    assert table.exit_code == 0
    assert job_id in table.output and "succeeded" in table.output


def test_status_watch_follows_a_running_job(sandbox: SandboxInfo) -> None:
    started = amishare(
        sandbox, "share", image(sandbox), "--region", REGION, "--to",
        ",".join(new_account_ids(3)), "--json",
    )  # fmt: skip
    assert started.exit_code == 0, started.output
    job_id = as_json(started)["id"]

    result = amishare(sandbox, "status", job_id, "--watch")

    assert result.exit_code == 0, result.output
    assert "3 destinations: 3 succeeded" in result.output


def test_revoke_waits_and_exits_0(sandbox: SandboxInfo) -> None:
    kept, revoked = new_account_ids(2)
    assert share_and_wait(sandbox, [kept, revoked]).exit_code == 0

    result = amishare(
        sandbox, "revoke", image(sandbox), "--region", REGION, "--from", revoked, "--wait"
    )

    assert result.exit_code == 0, result.output
    assert "revoke" in result.output and "→ succeeded" in result.output
    shares = as_json(amishare(sandbox, "shares", "--image", image(sandbox), "--json"))
    principals = {s["principal"] for s in shares["items"]}
    assert kept in principals and revoked not in principals
    events = amishare(sandbox, "events", newest_job(sandbox)["id"])
    assert events.exit_code == 0
    assert "ec2:ModifyImageAttribute" in events.output


def test_narrow_terminals_get_whole_ids_not_squeezed_tables(sandbox: SandboxInfo) -> None:
    assert share_and_wait(sandbox, new_account_ids(1)).exit_code == 0
    job_id = newest_job(sandbox)["id"]

    wide = amishare(sandbox, "jobs", "--limit", "1", columns=200)
    narrow = amishare(sandbox, "jobs", "--limit", "1", columns=60)

    assert wide.exit_code == narrow.exit_code == 0
    assert job_id in wide.output and "─" in wide.output  # a table
    assert f"job      {job_id}" in narrow.output  # one block per job
    assert max(len(line.rstrip()) for line in narrow.output.splitlines()) <= 60


def test_no_token_exits_2_with_the_401_detail(sandbox: SandboxInfo) -> None:
    result = amishare(sandbox, "jobs", token=None)

    assert result.exit_code == 2
    assert "401" in result.output
    assert "token" in result.output.lower()
    assert "Traceback" not in result.output


def test_cancel_of_a_finished_job_is_an_api_error(sandbox: SandboxInfo) -> None:
    assert share_and_wait(sandbox, new_account_ids(1)).exit_code == 0

    result = amishare(sandbox, "cancel", newest_job(sandbox)["id"])

    assert result.exit_code == 2
    assert "409" in result.output


def test_unknown_job_exits_2_with_404(sandbox: SandboxInfo) -> None:
    result = amishare(sandbox, "status", "no-such-job")

    assert result.exit_code == 2
    assert "404" in result.output


def test_connection_refused_is_one_line_and_exit_2(sandbox: SandboxInfo) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    result = amishare(sandbox, "jobs", url=f"http://127.0.0.1:{closed_port}")

    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "connection refused" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["share", "ami-0123456789abcdef0", "--to", "111122223333"],  # no --region
        ["share", "ami-0123456789abcdef0", "--region", REGION, "--label", "no-equals-sign"],
        ["share", "ami-0123456789abcdef0", "--region", REGION, "--kms-access", "maybe"],
        ["share", "ami-0123456789abcdef0", "--region", REGION, "--no-copy-tags"],  # no copy
    ],
)
def test_usage_errors_exit_2(sandbox: SandboxInfo, args: list[str]) -> None:
    def newest() -> list[Any]:
        with AmiShareClient(sandbox.url, sandbox.token) as client:
            return list(client.list_jobs(limit=1)["items"])

    before = newest()

    result = amishare(sandbox, *args)

    assert result.exit_code == 2
    assert "Usage:" in result.output  # the CLI refused it: no request reached the API
    assert newest() == before


def test_unchanged_job_polls_are_304s(sandbox: SandboxInfo) -> None:
    assert share_and_wait(sandbox, new_account_ids(1)).exit_code == 0
    job_id = newest_job(sandbox)["id"]
    with AmiShareClient(sandbox.url, sandbox.token) as client:
        first = client.get_job(job_id)
        again = client.get_job(job_id, first.etag)

    assert first.job is not None and first.etag
    assert again.job is None
    assert again.etag == first.etag


def test_share_with_copies_into_each_destination_and_status_shows_them(
    sandbox: SandboxInfo,
) -> None:
    result = share_and_wait(
        sandbox, list(DEMO_ACCOUNTS), "--copy-kms-key", sandbox.images.copy_key_alias
    )

    assert result.exit_code == 0, result.output
    job = newest_job(sandbox)
    assert job["copy"] == {"kms_key_id": sandbox.images.copy_key_alias, "copy_tags": True}
    status = amishare(sandbox, "status", job["id"])
    with AmiShareClient(sandbox.url, sandbox.token) as client:
        copies = [t["copied_image_id"] for t in client.all_targets(job["id"])]
    assert len(copies) == 2 and all(c and c in status.output for c in copies)
    assert f"under {sandbox.images.copy_key_alias}" in status.output


def test_reencrypt_with_shares_the_aws_managed_image_as_a_copy(sandbox: SandboxInfo) -> None:
    aws_managed = sandbox.images.aws_managed.image_id

    result = amishare(
        sandbox, "share", aws_managed, "--region", REGION, "--to", DEMO_ACCOUNTS[1],
        "--reencrypt-with", sandbox.images.key.key_arn, "--wait", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    job = as_json(result)
    assert job["status"] == "succeeded"
    assert job["shared_image_id"] not in (None, aws_managed)
    shares = amishare(sandbox, "shares", "--image", aws_managed)
    assert job["shared_image_id"] in shares.output
    assert f"copy of {aws_managed}" in shares.output


def test_also_in_shares_in_another_region_and_status_shows_each_region(
    sandbox: SandboxInfo,
) -> None:
    result = share_and_wait(
        sandbox, [DEMO_ACCOUNTS[0]], "--also-in", f"{OTHER_REGION}={OTHER_REGION_KEY_ALIAS}"
    )

    assert result.exit_code == 0, result.output
    job = newest_job(sandbox)
    assert job["regions"] == [OTHER_REGION]
    assert job["progress"]["succeeded"] == 2
    status = amishare(sandbox, "status", job["id"])
    rows = [line for line in status.output.splitlines() if line.startswith(OTHER_REGION)]
    assert rows and " 1 " in rows[0]  # its one target succeeded

    revoked = amishare(
        sandbox, "revoke", image(sandbox), "--region", REGION, "--from", DEMO_ACCOUNTS[0],
        "--also-in", OTHER_REGION, "--wait",
    )  # fmt: skip
    assert revoked.exit_code == 0, revoked.output


def test_also_in_without_a_key_is_a_usage_error(sandbox: SandboxInfo) -> None:
    result = share_and_wait(sandbox, [DEMO_ACCOUNTS[0]], "--also-in", OTHER_REGION)

    assert result.exit_code == 2
    assert "REGION=KEY" in result.output


def test_share_plan_prints_a_diff_and_makes_no_job(sandbox: SandboxInfo) -> None:
    accounts = new_account_ids(2)
    with AmiShareClient(sandbox.url, sandbox.token) as client:
        before = client.list_jobs(limit=500)["items"]

    result = amishare(
        sandbox, "share", image(sandbox), "--region", REGION, "--to", ",".join(accounts), "--plan"
    )

    assert result.exit_code == 0, result.output
    assert "Targets: 2 to change · 0 unchanged · 0 refused" in result.output
    assert "kms:PutKeyPolicy" in result.output and "ec2:ModifyImageAttribute" in result.output
    assert all(f"+ {a}" in result.output for a in accounts)
    assert "bytes (KMS takes at most 32,768)" in result.output
    planned = as_json(
        amishare(
            sandbox, "share", image(sandbox), "--region", REGION, "--to", accounts[0],
            "--plan", "--json",
        )
    )  # fmt: skip
    assert [t["outcome"] for t in planned["targets"]] == ["change"]
    with AmiShareClient(sandbox.url, sandbox.token) as client:
        assert client.list_jobs(limit=500)["items"] == before


def test_a_plan_the_job_would_fail_exits_1_and_says_why(sandbox: SandboxInfo) -> None:
    result = amishare(
        sandbox, "share", sandbox.images.aws_managed.image_id, "--region", REGION,
        "--to", DEMO_ACCOUNTS[0], "--plan",
    )  # fmt: skip

    assert result.exit_code == 1, result.output
    assert "The job would fail: AwsManagedKey" in result.output


def test_plan_with_wait_is_a_usage_error(sandbox: SandboxInfo) -> None:
    result = share_and_wait(sandbox, [DEMO_ACCOUNTS[0]], "--plan")

    assert result.exit_code == 2
    assert "--wait" in result.output


def test_policy_prints_the_destination_policy_of_a_job(sandbox: SandboxInfo) -> None:
    assert share_and_wait(sandbox, new_account_ids(1)).exit_code == 0
    job = newest_job(sandbox)

    result = amishare(sandbox, "policy", job["id"])

    assert result.exit_code == 0, result.output
    document = as_json(result)
    assert document == job["destination_policy"]
    assert document["Version"] == "2012-10-17"
    resources = {r for s in document["Statement"] for r in _as_list(s["Resource"])}
    assert sandbox.images.key.key_arn in resources


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_reconcile_shows_what_was_lost_and_repair_gives_it_back(sandbox: SandboxInfo) -> None:
    lost, kept = new_account_ids(2)
    assert share_and_wait(sandbox, [lost, kept]).exit_code == 0
    ec2 = seed.ec2_client(sandbox.aws_endpoint_url, REGION)
    ec2.modify_image_attribute(
        ImageId=image(sandbox), LaunchPermission={"Remove": [{"UserId": lost}]}
    )

    found = amishare(
        sandbox, "reconcile", image(sandbox), "--region", REGION,
        "--account", f"{lost},{kept}", "--wait",
    )  # fmt: skip

    assert found.exit_code == 0, found.output
    rows = {line.split()[0]: line for line in found.output.splitlines() if line[:12].isdigit()}
    assert "missing: launch_permission" in rows[lost]
    assert "in agreement" in rows[kept]
    repaired = amishare(
        sandbox, "reconcile", image(sandbox), "--region", REGION, "--account", lost,
        "--repair", "--wait", "--json",
    )  # fmt: skip
    assert repaired.exit_code == 0, repaired.output
    assert as_json(repaired)["repair"] is True
    described = ec2.describe_image_attribute(ImageId=image(sandbox), Attribute="launchPermission")
    assert lost in {p.get("UserId") for p in described["LaunchPermissions"]}
