"""Processes a benchmark runs against: the AWS double and `amishare serve`, on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
DESTINATION_ROLE = "amishare-destination"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AMISHARE_"))}
    env.update(FAKE_AWS_ENV)
    return env


@dataclass
class Double:
    url: str
    process: subprocess.Popen[str]

    def set_faults(self, **faults: Any) -> None:
        httpx.put(f"{self.url}/_amishare/faults", json=faults, timeout=10).raise_for_status()

    def open_accounts(self, accounts: list[str], region: str = "us-east-1") -> None:
        """The destination accounts exist before the share, as real ones do (see aws_double)."""
        body = {"accounts": accounts, "region": region}
        httpx.put(f"{self.url}/_amishare/accounts", json=body, timeout=600).raise_for_status()

    def clear_requests(self) -> None:
        httpx.delete(f"{self.url}/_amishare/requests", timeout=30).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/_amishare/requests", timeout=60)
        answer.raise_for_status()
        items: list[dict[str, Any]] = answer.json()
        return items


@contextlib.contextmanager
def aws_double() -> Iterator[Double]:
    process = subprocess.Popen(
        [sys.executable, "-m", "app.sandbox.aws_double", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=base_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"the AWS double did not start: {line!r}")
        yield Double(line.split(" ", 1)[1], process)
    finally:
        process.terminate()
        process.wait(timeout=20)


@dataclass
class Server:
    url: str
    token: str
    process: subprocess.Popen[bytes]

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def peak_rss_mb(self) -> float:
        return _status_kb(self.process.pid, "VmHWM") / 1024

    def rss_mb(self) -> float:
        return _status_kb(self.process.pid, "VmRSS") / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return ticks / os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


@contextlib.contextmanager
def amishare_server(double_url: str, **settings: str) -> Iterator[Server]:
    """`amishare serve` on a fresh SQLite database, with a fresh token."""
    token = secrets.token_urlsafe(24)
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        env = base_env()
        env.update(
            AMISHARE_DATABASE_URL=f"sqlite+aiosqlite:///{folder}/bench.db",
            AMISHARE_API_TOKENS=json.dumps(
                [{"name": "bench", "token": token, "scopes": ["jobs:read", "jobs:write"]}]
            ),
            AMISHARE_AWS_ENDPOINT_URL=double_url,
            AMISHARE_DESTINATION_ROLE_NAME=DESTINATION_ROLE,
            AMISHARE_LOG_LEVEL="WARNING",
        )
        env.update({f"AMISHARE_{k.upper()}": v for k, v in settings.items()})
        amishare = str(Path(sys.executable).parent / "amishare")
        command = [amishare, "serve", "--port", str(port)]
        process = subprocess.Popen(command, env=env)
        server = Server(f"http://127.0.0.1:{port}", token, process)
        try:
            _wait_until_up(server)
            yield server
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_until_up(server: Server) -> None:
    wait_for_http(f"{server.url}/readyz", server.process)


def wait_for_http(url: str, process: subprocess.Popen[Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")
