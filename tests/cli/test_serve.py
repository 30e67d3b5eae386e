"""`amishare serve`: what it says when no token is set, and logs a person can read."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from app.cli import NO_TOKENS_WARNING, cli, no_tokens_hint, warn_if_no_tokens
from app.config import Settings
from app.db import migrate

AMISHARE = Path(sys.executable).parent / "amishare"
TOKENS = '[{"name":"me","token":"a-long-random-token-0123","scopes":["jobs:read"]}]'


def amishare_env(**values: str) -> dict[str, str]:
    """The environment without any AMISHARE_* setting of whoever runs the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMISHARE_")}
    return {**env, **values}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def _keep_root_logging() -> Iterator[None]:
    """`amishare serve` configures logging; put the root logger back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """`serve` up to uvicorn.run, which (like the migrations) is replaced by a no-op."""
    runs: list[object] = []
    monkeypatch.setattr(migrate, "upgrade", lambda url: None)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(app))
    return runs


def test_the_hint_says_how_to_set_a_token_and_gives_none() -> None:
    hint = no_tokens_hint()

    assert "401" in hint and "AMISHARE_API_TOKENS" in hint and "AMISHARE_TOKEN=" in hint
    example = re.search(r"AMISHARE_API_TOKENS='([^']+)'", hint)
    assert example, hint
    # The example is a valid setting once a token is filled in...
    filled = example.group(1).replace("<16+ random characters>", "x" * 32)
    assert Settings(api_tokens=json.loads(filled)).api_tokens[0].name == "me"
    # ...and nothing in the hint could be used as one.
    assert not re.search(r'"token":"[A-Za-z0-9_-]{16,}"', hint)


@pytest.mark.usefixtures("_keep_root_logging")
def test_serve_without_tokens_prints_the_hint_once_on_stderr(
    served: list[object], tmp_path: Path
) -> None:
    env = amishare_env(AMISHARE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")

    result = CliRunner().invoke(cli, ["serve", "--port", "0"], env=env)  # type: ignore[arg-type]

    assert result.exit_code == 0, result.output
    assert len(served) == 1
    assert result.stderr.count(NO_TOKENS_WARNING) == 1
    assert no_tokens_hint() in result.stderr
    assert result.stdout == ""


@pytest.mark.usefixtures("_keep_root_logging")
def test_serve_with_tokens_says_nothing_of_them(served: list[object], tmp_path: Path) -> None:
    env = amishare_env(
        AMISHARE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}",
        AMISHARE_API_TOKENS=TOKENS,
    )

    result = CliRunner().invoke(cli, ["serve", "--port", "0"], env=env)  # type: ignore[arg-type]

    assert result.exit_code == 0, result.output
    assert len(served) == 1
    assert NO_TOKENS_WARNING not in result.output


def test_with_json_logs_the_hint_is_one_log_event(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    with caplog.at_level(logging.WARNING):
        warn_if_no_tokens(Settings(api_tokens=[], log_format="json"))

    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert NO_TOKENS_WARNING in caplog.records[0].getMessage()
    assert "\n" not in caplog.records[0].getMessage()
    assert capsys.readouterr().err == ""  # nothing but the log event


def _wait_ready(process: subprocess.Popen[bytes], url: str, stderr: Path) -> None:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}:\n{stderr.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve did not get ready:\n{stderr.read_text()}")


@pytest.mark.skipif(not AMISHARE.exists(), reason="the amishare console script is not installed")
def test_serve_logs_are_plain_text_after_the_hint(tmp_path: Path) -> None:
    """uvicorn gives each line a `color_message` (ANSI escapes): text logs leave it out."""
    port = free_port()
    stderr = tmp_path / "stderr"
    env = amishare_env(AMISHARE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(AMISHARE), "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=tmp_path,
        )
    try:
        _wait_ready(process, f"http://127.0.0.1:{port}/readyz", stderr)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/jobs").status_code == 401
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    text = stderr.read_text()

    assert process.returncode == 0, text
    assert "Uvicorn running on" in text  # uvicorn's own line, logged with a color_message
    assert "\x1b" not in text and "\\x1b" not in text and "color_message" not in text
    assert text.count(NO_TOKENS_WARNING) == 1
    assert text.index(NO_TOKENS_WARNING) < text.index("Uvicorn running on")
