"""`amishare sandbox`: the double, the demo AMIs, the service, and a clean stop."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from app.cli import cli
from app.sandbox import seed
from app.sandbox.run import (
    SandboxImages,
    SandboxInfo,
    banner_rows,
    print_banner,
    sandbox_running,
    try_it_commands,
)

AMISHARE = Path(sys.executable).parent / "amishare"
READY_LINE = "Ctrl-C stops the sandbox"


def snapshot_keys(info: SandboxInfo, snapshot_ids: tuple[str, ...]) -> set[str | None]:
    ec2 = seed.ec2_client(info.aws_endpoint_url)
    snapshots = ec2.describe_snapshots(SnapshotIds=list(snapshot_ids))["Snapshots"]
    return {s.get("KmsKeyId") for s in snapshots}


def port_is_closed(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


def test_sandbox_seeds_the_demo_account_serves_and_stops_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "someones-real-profile")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    threads_before = set(threading.enumerate())

    with sandbox_running(port=0) as info:
        # Nothing can reach AWS: no profile, fake credentials, the double as the endpoint.
        assert "AWS_PROFILE" not in os.environ
        assert os.environ["AWS_ENDPOINT_URL"] == info.aws_endpoint_url
        assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
        assert os.environ["AWS_ACCESS_KEY_ID"] == seed.FAKE_ACCESS_KEY_ID
        assert info.aws_endpoint_url.startswith("http://127.0.0.1:")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", info.url)

        images = info.images
        assert len(images.encrypted.snapshot_ids) == 2
        assert snapshot_keys(info, images.encrypted.snapshot_ids) == {images.key.key_arn}
        aws_managed_key = snapshot_keys(info, images.aws_managed.snapshot_ids).pop()
        assert aws_managed_key and aws_managed_key != images.key.key_arn
        assert snapshot_keys(info, images.unencrypted.snapshot_ids) == {None}

        assert httpx.get(f"{info.url}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{info.url}/v1/jobs").status_code == 401
        headers = {"Authorization": f"Bearer {info.token}"}
        answer = httpx.post(
            f"{info.url}/v1/jobs",
            headers=headers,
            json={
                "action": "share",
                "image_id": images.encrypted.image_id,
                "region": info.region,
                "account_ids": ["111122223333"],
            },
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["verify"] is True  # a destination role is configured
        database = Path(info.database_url.removeprefix("sqlite+aiosqlite:///"))
        assert database.is_file()

    assert port_is_closed(info.url)
    assert port_is_closed(info.aws_endpoint_url)
    assert not database.exists()
    started_here = [t for t in threading.enumerate() if t not in threads_before]
    assert not [t for t in started_here if t.name.startswith("amishare")]
    assert os.environ["AWS_PROFILE"] == "someones-real-profile"
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_banner_has_the_url_token_images_and_commands_to_paste() -> None:
    with sandbox_running(port=0) as info:
        out = io.StringIO()
        print_banner(info, Console(file=out, width=100))
    text = out.getvalue()

    for value in (
        info.url,
        info.token,
        info.images.encrypted.image_id,
        info.images.aws_managed.image_id,
        info.images.unencrypted.image_id,
        f"export AMISHARE_URL={info.url} AMISHARE_TOKEN={info.token}",
        f"amishare share {info.images.encrypted.image_id} --region us-east-1 --to",
        "curl -s -X POST",
    ):
        assert value in text
    # Commands are never wrapped mid-line, so that they paste as they are.
    assert all(len(line) > 100 for line in text.splitlines() if line.startswith("curl -s -X"))


def fake_info() -> SandboxInfo:
    """What a sandbox would report, without starting one: IDs as long as the real ones."""
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/18f50389-8557-4c98-bbbc-4ab7577b4f02"

    def image(image_id: str, key: str | None) -> seed.SeededImage:
        return seed.SeededImage(image_id, ("snap-0a1b2c3d4e5f60718",), key)

    return SandboxInfo(
        url="http://127.0.0.1:48080",
        token="sbx-D2u5rOpzDLvhHZrYJLHweFrAaxRABmgY",
        region="us-east-1",
        source_account_id="123456789012",
        aws_endpoint_url="http://127.0.0.1:43355",
        database_url="sqlite+aiosqlite:////tmp/amishare-sandbox.db",
        images=SandboxImages(
            key=seed.SeededKey(key_id=key_arn.rsplit("/", 1)[1], key_arn=key_arn),
            encrypted=image("ami-2b26cb255eacecbdc", key_arn),
            aws_managed=image("ami-023b8752c61e58b35", "arn:aws:kms:us-east-1:1:key/aws-ebs"),
            unencrypted=image("ami-d0018662f90e1ab9f", None),
        ),
        double=None,  # type: ignore[arg-type]  (the banner never touches it)
    )


ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize(
    "console_options",
    [
        pytest.param({"width": 40}, id="width-40"),
        pytest.param({}, id="not-a-terminal"),
        pytest.param({"width": 40, "force_terminal": True}, id="narrow-terminal"),
    ],
)
def test_banner_rows_and_ids_are_never_cut_or_wrapped(console_options: dict[str, object]) -> None:
    info = fake_info()
    out = io.StringIO()

    print_banner(info, Console(file=out, **console_options))  # type: ignore[arg-type]

    lines = [ANSI.sub("", line).rstrip() for line in out.getvalue().splitlines()]
    assert not any("…" in line for line in lines)
    width = max(len(name) for name, _ in banner_rows(info)) + 2
    for name, value in banner_rows(info):  # each row whole, on one line, label and value
        assert name.ljust(width) + value in lines
    images = info.images
    ids = [
        info.url,
        info.token,
        info.aws_endpoint_url,
        images.key.key_arn,
        images.encrypted.image_id,
        images.aws_managed.image_id,
        images.unencrypted.image_id,
    ]
    for value in ids:
        assert any(value in line for line in lines), value
    for _, command in try_it_commands(info):  # commands paste as they are
        assert command in lines


@pytest.fixture
def _keep_root_logging() -> Iterator[None]:
    """`amishare sandbox` configures logging; put the root logger back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("_keep_root_logging")
def test_missing_moto_is_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if moto were not installed: importing the double (which imports moto) fails.
    monkeypatch.setitem(sys.modules, "app.sandbox.aws_double", None)

    result = CliRunner().invoke(cli, ["sandbox", "--port", "0"])

    assert result.exit_code == 1
    assert "pip install 'amishare[sandbox]'" in result.output
    assert "Traceback" not in result.output


def _read_until_ready(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    seen = ""
    while READY_LINE not in seen:
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            raise AssertionError(f"the sandbox did not start:\n{seen}")
        seen += line
    return seen


@pytest.mark.skipif(not AMISHARE.exists(), reason="the amishare console script is not installed")
def test_the_command_prints_where_to_go_and_ctrl_c_stops_it() -> None:
    env = {**os.environ, "COLUMNS": "200", "AWS_PROFILE": "someones-real-profile"}
    process = subprocess.Popen(
        [str(AMISHARE), "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        banner = _read_until_ready(process, time.monotonic() + 45)
        url = re.search(r"export AMISHARE_URL=(\S+) AMISHARE_TOKEN=(\S+)", banner)
        assert url, banner
        assert httpx.get(f"{url.group(1)}/healthz").status_code == 200
        jobs = httpx.get(
            f"{url.group(1)}/v1/jobs", headers={"Authorization": f"Bearer {url.group(2)}"}
        )
        assert jobs.status_code == 200

        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)

    assert process.returncode == 0, rest
    assert "Sandbox stopped." in rest
    assert "Traceback" not in rest
    assert port_is_closed(url.group(1))
