"""Multi-process fixtures: an AWS double process, a fresh PostgreSQL database, `amishare serve`
(API only) and any number of `amishare worker` processes on it, and a TCP proxy in front of
PostgreSQL that a test can cut and restore. Every socket is on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.migrate import upgrade
from app.sandbox import seed
from tests.conftest import (
    DESTINATION_ROLE,
    REGION,
    WRITER_TOKEN,
    _create_postgres_database,
    _drop_postgres_database,
)

ROOT = Path(__file__).resolve().parents[2]
# The console script next to this interpreter (.venv/bin/amishare), or the same entry point.
_SCRIPT = Path(sys.executable).with_name("amishare")
AMISHARE = (
    [str(_SCRIPT)]
    if _SCRIPT.is_file()
    else [sys.executable, "-c", "from app.cli import main; main()"]
)
LEASE_SECONDS = 3.0
STARTUP_TIMEOUT = 45.0
FINISHED = ("succeeded", "partially_succeeded", "failed", "cancelled")


# ------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------


@dataclass
class Process:
    """A child process whose output goes to a log file (shown when a test fails)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def events(self, message: str | None = None) -> list[dict[str, Any]]:
        """The process's JSON log events (AMISHARE_LOG_FORMAT=json), optionally one kind."""
        found = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if message is None or event.get("message") == message:
                        found.append(event)
        return found

    def claimed(self) -> list[str]:
        return [e["job_id"] for e in self.events("job claimed")]

    def signal(self, signum: int) -> None:
        if self.alive():
            self.popen.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: no chance to release anything."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    async def wait_exit(self, timeout: float) -> int:
        """The exit code, waiting at most `timeout` seconds (fails the test beyond that)."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} still running after {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.05)
        return int(self.popen.returncode)

    async def wait_log(self, text: str, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if not self.alive():
                raise AssertionError(f"{self.name} exited before '{text}':\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never logged '{text}':\n{self.tail()}")
            await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ------------------------------------------------------------------------------------------------
# The AWS double, in its own process (as a deployment's workers would see AWS)
# ------------------------------------------------------------------------------------------------


@dataclass
class DoubleProcess:
    url: str
    popen: subprocess.Popen[str]

    def _control(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, trust_env=False)

    def reset(self) -> None:
        with self._control() as control:
            control.post("/_amishare/reset").raise_for_status()

    def set_faults(self, **faults: Any) -> None:
        with self._control() as control:
            control.put("/_amishare/faults", json=faults).raise_for_status()

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        with self._control() as control:
            answer = control.get("/_amishare/requests", params={"since": since})
            answer.raise_for_status()
            records: list[dict[str, Any]] = answer.json()
            return records


@pytest.fixture(scope="session")
def double_process() -> Iterator[DoubleProcess]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    command = [sys.executable, "-m", "app.sandbox.aws_double", "--port", "0"]
    popen = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert popen.stdout is not None
        ready: list[str] = []
        reader = threading.Thread(
            target=lambda: ready.append(popen.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(timeout=STARTUP_TIMEOUT)
        assert ready and ready[0].startswith("READY http://127.0.0.1:"), ready
        yield DoubleProcess(ready[0].split()[1], popen)
    finally:
        popen.terminate()
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)


@pytest.fixture
def double(double_process: DoubleProcess) -> DoubleProcess:
    """The double with no AWS resources, no recorded calls and no faults."""
    double_process.reset()
    return double_process


# ------------------------------------------------------------------------------------------------
# PostgreSQL: a fresh database per test, and a proxy that can cut it off
# ------------------------------------------------------------------------------------------------


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    url = await _create_postgres_database()
    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await _drop_postgres_database(url)


class TcpProxy:
    """A TCP forwarder to PostgreSQL, on its own thread and event loop (so that a test blocking
    its own loop never stalls the database traffic).

    `cut()` drops every open connection and refuses new ones (connections are accepted and
    reset at once), like a database that crashed; `restore()` forwards again. `pause()` stops
    forwarding without closing anything (bytes and new connections wait), like a network
    partition: nothing fails, everything hangs; `resume()` lets it all through."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.refused = 0

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)

    async def _listen(self) -> int:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            self.refused += 1
            writer.transport.abort()
            return
        assert self._flowing is not None
        await self._flowing.wait()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(
                self._pump(reader, upstream_writer),
                self._pump(upstream_reader, writer),
            )
        finally:
            self._writers -= {writer, upstream_writer}

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                assert self._flowing is not None
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass  # the other side went away (or the proxy dropped it): close this side too
        finally:
            writer.transport.abort()

    def _drop_all(self) -> None:
        self._open = False
        for writer in list(self._writers):
            writer.transport.abort()

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._drop_all)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_open", True)

    def pause(self) -> None:
        assert self._flowing is not None
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        assert self._flowing is not None
        self._loop.call_soon_threadsafe(self._flowing.set)

    def stop(self) -> None:
        async def close() -> None:
            assert self._flowing is not None
            self._flowing.set()
            self._drop_all()
            if self._server is not None:
                self._server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def postgres_proxy(postgres_url: str) -> Iterator[TcpProxy]:
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def via_proxy(url: str, proxy: TcpProxy) -> str:
    """The same database, reached through the proxy."""
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


# ------------------------------------------------------------------------------------------------
# The cluster: one API process and N worker processes on one database
# ------------------------------------------------------------------------------------------------


def base_settings() -> dict[str, str]:
    return {
        "AMISHARE_DESTINATION_ROLE_NAME": DESTINATION_ROLE,
        "AMISHARE_LEASE_SECONDS": str(LEASE_SECONDS),
        "AMISHARE_POLL_INTERVAL_SECONDS": "0.1",
        "AMISHARE_STEP_BACKOFF_SECONDS": "0.05",
        "AMISHARE_VERIFY_INITIAL_DELAY_SECONDS": "0.05",
        "AMISHARE_VERIFY_TIMEOUT_SECONDS": "15",
        "AMISHARE_SHUTDOWN_GRACE_SECONDS": "5",
        "AMISHARE_MAX_JOB_ATTEMPTS": "5",
        "AMISHARE_WORKER_MAX_JOBS": "4",
        "AMISHARE_LOG_LEVEL": "INFO",
        "AMISHARE_LOG_FORMAT": "json",
    }


@dataclass
class Cluster:
    database_url: str
    double: DoubleProcess
    directory: Path
    settings: dict[str, str] = field(default_factory=base_settings)
    processes: list[Process] = field(default_factory=list)
    api_url: str = ""
    _client: httpx.AsyncClient | None = None

    def env(self, database_url: str | None = None, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMISHARE_")}
        env.update(
            AWS_ACCESS_KEY_ID=seed.FAKE_ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=seed.FAKE_SECRET_ACCESS_KEY,
            AWS_DEFAULT_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            NO_PROXY="127.0.0.1,localhost",
            PYTHONUNBUFFERED="1",
            AMISHARE_DATABASE_URL=database_url or self.database_url,
            AMISHARE_AWS_ENDPOINT_URL=self.double.url,
            AMISHARE_API_TOKENS=json.dumps(
                [{"name": "writer", "token": WRITER_TOKEN, "scopes": ["jobs:read", "jobs:write"]}]
            ),
            **self.settings,
        )
        env.pop("AWS_SESSION_TOKEN", None)
        env.pop("AWS_PROFILE", None)
        env.update(overrides)
        return env

    def _spawn(self, name: str, arguments: list[str], env: dict[str, str]) -> Process:
        log_path = self.directory / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [*AMISHARE, *arguments],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def spawn_worker(
        self, name: str | None = None, database_url: str | None = None, **settings: str
    ) -> Process:
        name = name or f"worker-{len(self.processes)}"
        return self._spawn(name, ["worker"], self.env(database_url, **settings))

    async def start_worker(
        self, name: str | None = None, database_url: str | None = None, **settings: str
    ) -> Process:
        worker = self.spawn_worker(name, database_url, **settings)
        await worker.wait_log("worker started")
        return worker

    async def start_workers(self, count: int, **settings: str) -> list[Process]:
        workers = [self.spawn_worker(**settings) for _ in range(count)]
        for worker in workers:
            await worker.wait_log("worker started")
        return workers

    async def start_api(self, database_url: str | None = None, **settings: str) -> Process:
        port = free_port()
        env = self.env(database_url, AMISHARE_EMBEDDED_WORKER="false", **settings)
        api = self._spawn("api", ["serve", "--host", "127.0.0.1", "--port", str(port)], env)
        self.api_url = f"http://127.0.0.1:{port}"
        self._client = httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {WRITER_TOKEN}"},
            timeout=30,
            trust_env=False,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await self._client.get("/healthz")).status_code == 200:
                    return api
            if not api.alive() or time.monotonic() > deadline:
                raise AssertionError(f"the API did not start:\n{api.tail()}")
            await asyncio.sleep(0.1)

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "start_api() first"
        return self._client

    async def post_job(self, **body: Any) -> httpx.Response:
        body.setdefault("action", "share")
        body.setdefault("region", REGION)
        return await self.client.post("/v1/jobs", json=body)

    async def share(self, image_id: str, accounts: list[str], **body: Any) -> str:
        answer = await self.post_job(image_id=image_id, account_ids=accounts, **body)
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["id"]
        return job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        answer = await self.client.get(f"/v1/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job

    async def wait_for(self, job_ids: list[str], timeout: float) -> list[dict[str, Any]]:
        """Poll until every job is finished; fail with the processes' logs after `timeout`."""
        deadline = time.monotonic() + timeout
        done: dict[str, dict[str, Any]] = {}
        while True:
            for job_id in job_ids:
                if job_id not in done:
                    with contextlib.suppress(httpx.TransportError):
                        answer = await self.client.get(f"/v1/jobs/{job_id}")
                        if answer.status_code == 200 and answer.json()["status"] in FINISHED:
                            done[job_id] = answer.json()
            if len(done) == len(job_ids):
                return [done[job_id] for job_id in job_ids]
            if time.monotonic() > deadline:
                waiting = [j for j in job_ids if j not in done]
                raise AssertionError(
                    f"{len(waiting)} jobs not finished after {timeout}s: {waiting[:5]}\n"
                    + self.logs()
                )
            await asyncio.sleep(0.2)

    async def wait_until(self, job_id: str, predicate: Any, timeout: float) -> dict[str, Any]:
        """Poll the job's targets until `predicate(targets)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            targets = await self.targets(job_id)
            if predicate(targets):
                return await self.job(job_id)
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not reached after {timeout}s\n" + self.logs())
            await asyncio.sleep(0.05)

    async def _pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {"limit": 500, **params, **({"cursor": cursor} if cursor else {})}
            answer = await self.client.get(path, params=query)
            assert answer.status_code == 200, answer.text
            page = answer.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    async def targets(self, job_id: str) -> list[dict[str, Any]]:
        return await self._pages(f"/v1/jobs/{job_id}/targets")

    async def shares(self, **params: Any) -> list[dict[str, Any]]:
        return await self._pages("/v1/shares", **params)

    async def job_row(self, job_id: str) -> dict[str, Any]:
        """The job's row as the workers see it (worker_id, attempts, lease)."""
        engine = create_async_engine(self.database_url)
        try:
            async with engine.connect() as connection:
                row = (
                    await connection.execute(
                        text("SELECT * FROM job WHERE id = :id"), {"id": job_id}
                    )
                ).one()
                return dict(row._mapping)
        finally:
            await engine.dispose()

    async def holder(self, job_id: str) -> Process:
        """The worker process that holds the job's lease now."""
        worker_id = (await self.job_row(job_id))["worker_id"]
        assert worker_id, f"nobody holds {job_id}"
        pid = int(worker_id.split(":")[1])
        return next(p for p in self.processes if p.pid == pid)

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}) ---\n{p.tail(lines)}" for p in self.processes)

    async def aclose(self) -> None:
        for process in self.processes:
            process.signal(signal.SIGTERM)
        for process in self.processes:
            with contextlib.suppress(AssertionError):
                await process.wait_exit(15)
            if process.alive():
                process.kill()
        if self._client is not None:
            await self._client.aclose()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
async def cluster(
    request: pytest.FixtureRequest, postgres_url: str, double: DoubleProcess, tmp_path: Path
) -> AsyncIterator[Cluster]:
    running = Cluster(postgres_url, double, tmp_path)
    try:
        yield running
    finally:
        await running.aclose()
        if request.node.stash.get(_FAILED, False):
            print(running.logs(lines=80))


# ------------------------------------------------------------------------------------------------
# AWS fixtures and what landed on AWS
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    image_id: str
    snapshot_ids: tuple[str, ...]
    key_id: str
    key_arn: str


def seed_images(
    double: DoubleProcess, count: int, keys: int = 1, snapshots: int = 1
) -> list[Image]:
    """`count` encrypted images; image i uses key i % keys (so that jobs share keys)."""
    made = [seed.create_customer_key(double.url) for _ in range(keys)]
    images = []
    for index in range(count):
        key = made[index % keys]
        image = seed.create_encrypted_image(double.url, key.key_id, snapshot_count=snapshots)
        images.append(Image(image.image_id, image.snapshot_ids, key.key_id, key.key_arn))
    return images


def successful_mutations(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["mutating"] and r["status"] < 400 and not r["fault"]]


def launch_permission_adds(record: dict[str, Any]) -> tuple[str, frozenset[str]]:
    params = record["params"] or {}
    adds = params.get("LaunchPermission", {}).get("Add", [])
    return params.get("ImageId", ""), frozenset(p["UserId"] for p in adds if "UserId" in p)


def snapshot_adds(record: dict[str, Any]) -> tuple[str, frozenset[str]]:
    params = record["params"] or {}
    if params.get("OperationType") == "add":  # the short form the gateway sends
        return params.get("SnapshotId", ""), frozenset(params.get("UserIds", []))
    adds = params.get("CreateVolumePermission", {}).get("Add", [])
    return params.get("SnapshotId", ""), frozenset(p["UserId"] for p in adds if "UserId" in p)


def policy_accounts(policy_text: str) -> set[str]:
    """Accounts in the AmiShareAccounts statements of a key policy document."""
    accounts: set[str] = set()
    for statement in json.loads(policy_text)["Statement"]:
        if statement.get("Sid", "").startswith("AmiShareAccounts"):
            principals = statement["Principal"]["AWS"]
            principals = [principals] if isinstance(principals, str) else principals
            accounts |= {p.split(":")[4] for p in principals}
    return accounts


def key_policy_puts(records: list[dict[str, Any]]) -> dict[str, list[set[str]]]:
    """For each key, the destination accounts of every PutKeyPolicy that landed, in order."""
    puts: dict[str, list[set[str]]] = {}
    for record in successful_mutations(records):
        if record["action"] == "PutKeyPolicy":
            params = record["params"] or {}
            puts.setdefault(params["KeyId"], []).append(policy_accounts(params["Policy"]))
    return puts


def current_policy_accounts(double: DoubleProcess, key_id: str) -> set[str]:
    kms = seed.kms_client(double.url, REGION)
    return policy_accounts(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])


def launch_permission_accounts(double: DoubleProcess, image_id: str) -> set[str]:
    ec2 = seed.ec2_client(double.url, REGION)
    answer = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")
    return {p["UserId"] for p in answer.get("LaunchPermissions", []) if "UserId" in p}
