"""`amishare sandbox`: the service on 127.0.0.1 against an in-process AWS double, with demo AMIs.

Nothing here can reach real AWS: fake credentials are put in the environment (and any profile,
role or container credentials taken out of it) before anything creates a client, every client
and the service itself are pointed at the double's loopback endpoint, and the shared AWS
config files are replaced by empty ones for as long as the sandbox runs.

    run_sandbox(8080, ready=print_banner_callback)   # blocks; Ctrl-C (or `stop`) ends it
    with sandbox_running(port=0) as info: ...        # in a thread, for tests
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import shlex
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from app.config import ApiToken, Settings
from app.sandbox import seed

if TYPE_CHECKING:
    from fastapi import FastAPI
    from rich.console import Console

    from app.sandbox.aws_double import AwsDouble

HOST = "127.0.0.1"
REGION = seed.DEFAULT_REGION
DESTINATION_ROLE = "amishare-sandbox-destination"
DEMO_ACCOUNTS = ("111122223333", "444455556666")
COPY_KEY_ALIAS = "alias/amishare-sandbox-copies"
# Another Region of the demo source, with its own key for the image's copy there.
OTHER_REGION = "eu-west-1"
OTHER_REGION_KEY_ALIAS = "alias/amishare-sandbox-eu"
DEMO_TAGS = {"team": "platform", "os": "linux"}
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": seed.FAKE_ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": seed.FAKE_SECRET_ACCESS_KEY,
    "AWS_SESSION_TOKEN": "sandbox",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
# Anything that could point a client at real credentials or another endpoint.
SCRUBBED_AWS_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
)
# Quick steps: the double answers at once, so the demo need not wait like real AWS.
SANDBOX_TUNING: dict[str, Any] = {
    "poll_interval_seconds": 0.1,
    "step_backoff_seconds": 0.05,
    "verify_initial_delay_seconds": 0.2,
    "verify_timeout_seconds": 15.0,
    "copy_poll_seconds": 0.5,
    "shutdown_grace_seconds": 5.0,
}
STARTUP_TIMEOUT = 60.0
SANDBOX_COPY_SECONDS = 3.0
BACKLOG = 128


class SandboxError(RuntimeError):
    """The sandbox cannot start: moto missing, port taken, the service failed."""


class StopFlag(Protocol):
    """threading.Event or asyncio.Event: anything that says when to stop."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class SandboxImages:
    """The demo source account's key and AMIs (all in `REGION`)."""

    key: seed.SeededKey
    encrypted: seed.SeededImage  # two snapshots, both encrypted with `key`
    aws_managed: seed.SeededImage  # encrypted with alias/aws/ebs: a share fails, AwsManagedKey
    unencrypted: seed.SeededImage
    # Each demo destination has a key under this alias: `copy` re-encrypts its copy with it.
    copy_key_alias: str = COPY_KEY_ALIAS


@dataclass(frozen=True)
class SandboxInfo:
    url: str
    token: str
    region: str
    source_account_id: str
    aws_endpoint_url: str
    database_url: str
    images: SandboxImages
    double: AwsDouble = field(repr=False, compare=False)


ReadyCallback = Callable[[SandboxInfo], None]


# --------------------------------------------------------------------------------------------
# Isolation from real AWS
# --------------------------------------------------------------------------------------------


@contextmanager
def fake_aws_environment() -> Iterator[None]:
    """Fake credentials and no profile in os.environ; the previous values come back on exit."""
    touched = set(FAKE_AWS_ENV) | set(SCRUBBED_AWS_ENV) | {"AWS_ENDPOINT_URL"}
    touched |= {name for name in os.environ if name.startswith("AWS_ENDPOINT_URL_")}
    saved = {name: os.environ.get(name) for name in touched}
    for name in touched - set(FAKE_AWS_ENV):
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Stopping:
    """Whether the service is already shutting down (set once uvicorn has been asked to)."""

    def __init__(self) -> None:
        self.servers: list[Any] = []  # uvicorn.Server, registered by `serve`

    def __call__(self) -> bool:
        return any(server.should_exit for server in self.servers)


@contextmanager
def signals_interrupt(stopping: Stopping) -> Iterator[None]:
    """In the main thread, Ctrl-C and SIGTERM raise KeyboardInterrupt (so that everything
    started so far is stopped), except once the service is shutting down: uvicorn handles
    both signals while it serves and raises them again after a graceful shutdown."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if not stopping():
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_double() -> AwsDouble:
    """The AWS double (moto is an optional dependency: imported only here)."""
    try:
        from app.sandbox.aws_double import start
    except ModuleNotFoundError as missing:
        raise SandboxError(
            "the sandbox needs moto (the local AWS double), an optional dependency: "
            f"pip install 'amishare[sandbox]' (cannot import {missing.name})"
        ) from missing
    double = start(host=HOST)
    # Any client created without an endpoint lands on the double too.
    os.environ["AWS_ENDPOINT_URL"] = double.url
    return double


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------


def seed_demo(endpoint_url: str) -> SandboxImages:
    key = seed.create_customer_key(endpoint_url, description="amishare sandbox key")
    images = SandboxImages(
        key=key,
        encrypted=seed.create_encrypted_image(
            endpoint_url, key.key_id, snapshot_count=2, name="amishare-sandbox-encrypted"
        ),
        aws_managed=seed.create_aws_managed_key_image(
            endpoint_url, name="amishare-sandbox-aws-managed-key"
        ),
        unencrypted=seed.create_unencrypted_image(endpoint_url, name="amishare-sandbox-plain"),
    )
    for image in (images.encrypted, images.aws_managed):
        seed.tag_image(endpoint_url, image.image_id, DEMO_TAGS)  # copies carry them
    for account_id in DEMO_ACCOUNTS:  # the destinations' own keys, for their copies
        _aliased_key(endpoint_url, account_id, COPY_KEY_ALIAS, REGION)
    _aliased_key(endpoint_url, seed.SOURCE_ACCOUNT_ID, OTHER_REGION_KEY_ALIAS, OTHER_REGION)
    return images


def _aliased_key(endpoint_url: str, account_id: str, alias: str, region: str) -> None:
    """A customer managed key under `alias` (kept from an earlier sandbox of this process:
    the double's state is one per process)."""
    from botocore.exceptions import ClientError

    try:
        seed.create_destination_key(endpoint_url, account_id, alias, region=region)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "AlreadyExistsException":
            raise


def new_token() -> str:
    return "sbx-" + secrets.token_urlsafe(24)


def sandbox_settings(
    database_url: str,
    token: str,
    endpoint_url: str,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Every setting that decides where calls go is given here, none taken from AMISHARE_*."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_tokens": [ApiToken(name="sandbox", token=token, scopes=["jobs:read", "jobs:write"])],
        "aws_endpoint_url": endpoint_url,
        "source_role_name": None,
        "destination_role_name": DESTINATION_ROLE,
        "external_id": None,
        "aws_default_region": REGION,
        "embedded_worker": True,
        "allowed_destinations": None,
        **SANDBOX_TUNING,
    }
    values.update(overrides or {})
    return Settings(**values)


def bind(port: int, host: str = HOST) -> socket.socket:
    """The listening socket, bound before anything else starts (port 0: a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)  # now: two sandboxes may both bind with SO_REUSEADDR, not listen
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise SandboxError(
                f"port {port} on {host} is in use: pick another with --port"
            ) from None
        raise SandboxError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


@contextmanager
def temporary_database() -> Iterator[str]:
    """A migrated SQLite file in a temporary directory, removed on exit."""
    from app.db.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="amishare-sandbox-", ignore_cleanup_errors=True) as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'amishare-sandbox.db'}"
        upgrade(url)
        yield url


# --------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------


async def _until(done: Callable[[], bool], task: asyncio.Task[None]) -> None:
    while not done() and not task.done():
        await asyncio.wait({task}, timeout=0.05)


async def _uvicorn(server: Any, sock: socket.socket) -> None:
    """uvicorn.Server.serve, with its startup-failure sys.exit turned into a SandboxError."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exit_:
        raise SandboxError(
            f"the service failed to start (exit {exit_.code}); see the log above"
        ) from None


async def _started(server: Any, task: asyncio.Task[None]) -> bool:
    """Whether uvicorn started; False when it was stopped first (Ctrl-C while starting)."""
    try:
        await asyncio.wait_for(_until(lambda: server.started, task), STARTUP_TIMEOUT)
    except TimeoutError:
        raise SandboxError(f"the service did not start within {STARTUP_TIMEOUT:.0f}s") from None
    if not server.started:
        await task  # raises what stopped it, if anything did
    return bool(server.started)


async def serve(
    app: FastAPI,
    sock: socket.socket,
    info: SandboxInfo,
    ready: ReadyCallback | None,
    stop: StopFlag | None,
    stopping: Stopping,
) -> None:
    """uvicorn on `sock` until `stop` is set or a signal (Ctrl-C, in the main thread) arrives."""
    import uvicorn

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    stopping.servers.append(server)
    task = asyncio.create_task(_uvicorn(server, sock), name="amishare sandbox")
    try:
        if await _started(server, task):
            if ready is not None:
                ready(info)
            await _until(lambda: stop is not None and stop.is_set(), task)
    finally:
        server.should_exit = True
        await asyncio.wait({task})
    task.result()


def run_sandbox(
    port: int = 8080,
    ready: ReadyCallback | None = None,
    stop: StopFlag | None = None,
    *,
    settings_overrides: Mapping[str, Any] | None = None,
) -> None:
    """Start the double, seed it, serve the API on 127.0.0.1:`port` (0: any free port), call
    `ready(info)` once it answers, and run until `stop` is set or Ctrl-C (or SIGTERM); then
    stop everything (in reverse order) and return.
    """
    from app.main import create_app

    stopping = Stopping()
    with ExitStack() as stack:
        stack.enter_context(signals_interrupt(stopping))
        stack.enter_context(fake_aws_environment())
        sock = stack.enter_context(closing(bind(port)))
        double = stack.enter_context(start_double())
        double.set_faults(copy_seconds=SANDBOX_COPY_SECONDS)  # a copy takes a moment, as on AWS
        images = seed_demo(double.url)
        database_url = stack.enter_context(temporary_database())
        token = new_token()
        info = SandboxInfo(
            url=f"http://{HOST}:{sock.getsockname()[1]}",
            token=token,
            region=REGION,
            source_account_id=seed.SOURCE_ACCOUNT_ID,
            aws_endpoint_url=double.url,
            database_url=database_url,
            images=images,
            double=double,
        )
        settings = sandbox_settings(database_url, token, double.url, settings_overrides)
        asyncio.run(serve(create_app(settings), sock, info, ready, stop, stopping))


@contextmanager
def sandbox_running(
    port: int = 0,
    *,
    settings_overrides: Mapping[str, Any] | None = None,
    timeout: float = STARTUP_TIMEOUT,
) -> Iterator[SandboxInfo]:
    """The sandbox in a background thread: yields once it answers; stopped (and joined) on
    exit. For tests and notebooks; the CLI calls `run_sandbox` in the main thread."""
    stop = threading.Event()
    started: Queue[SandboxInfo | BaseException] = Queue()

    def target() -> None:
        try:
            run_sandbox(port, started.put, stop, settings_overrides=settings_overrides)
        except BaseException as error:  # handed to the caller, not lost in the thread
            started.put(error)

    thread = threading.Thread(target=target, name="amishare-sandbox", daemon=True)
    thread.start()
    try:
        first = started.get(timeout=timeout)
    except Empty:
        stop.set()
        raise SandboxError(f"the sandbox did not start within {timeout:.0f}s") from None
    try:
        if isinstance(first, BaseException):
            raise first
        yield first
    finally:
        stop.set()
        thread.join(timeout=timeout)


# --------------------------------------------------------------------------------------------
# What `amishare sandbox` prints
# --------------------------------------------------------------------------------------------


def try_it_commands(info: SandboxInfo) -> list[tuple[str, str]]:
    """(comment, command) pairs to paste into another terminal."""
    image = info.images.encrypted.image_id
    region = info.region
    first, second = DEMO_ACCOUNTS
    body = (
        f'{{"action": "share", "image_id": "{image}", "region": "{region}", '
        f'"account_ids": ["{first}"]}}'
    )
    auth = '-H "Authorization: Bearer $AMISHARE_TOKEN"'
    return [
        (
            "point the CLI at the sandbox",
            f"export AMISHARE_URL={info.url} AMISHARE_TOKEN={info.token}",
        ),
        (
            "see first what a share would change (read calls only, no job)",
            f"amishare share {image} --region {region} --to {first},{second} --plan",
        ),
        (
            "share with two accounts, and follow the job",
            f"amishare share {image} --region {region} --to {first},{second} --wait",
        ),
        ("what is shared now", f"amishare shares --image {image}"),
        (
            "the IAM policy a destination attaches to its roles (JOB_ID: as the share printed)",
            "amishare policy JOB_ID",
        ),
        (
            "is the ledger still what AWS shares? (--repair, --prune to act on it)",
            f"amishare reconcile {image} --region {region} --wait",
        ),
        (
            "take it back from one account",
            f"amishare revoke {image} --region {region} --from {first} --wait",
        ),
        (
            "each destination copies the image, re-encrypted with its own key",
            f"amishare share {image} --region {region} --to {first},{second} "
            f"--copy-kms-key {info.images.copy_key_alias} --wait",
        ),
        (
            f"share in {OTHER_REGION} too: the source copies the image there, under its key",
            f"amishare share {image} --region {region} --to {first} "
            f"--also-in {OTHER_REGION}={OTHER_REGION_KEY_ALIAS} --wait",
        ),
        (
            "a job that fails: AWS managed keys cannot be shared (exit 1)",
            f"amishare share {info.images.aws_managed.image_id} --region {region} "
            f"--to {second} --wait",
        ),
        (
            "... unless amishare shares a copy re-encrypted with a customer managed key",
            f"amishare share {info.images.aws_managed.image_id} --region {region} "
            f"--to {second} --reencrypt-with {info.images.key.key_arn} --wait",
        ),
        ("recent jobs", "amishare jobs"),
        (
            "the same over HTTP",
            f'curl -s -X POST "$AMISHARE_URL/v1/jobs" {auth} '
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)}",
        ),
        ("", f'curl -s "$AMISHARE_URL/v1/jobs?limit=5" {auth}'),
    ]


def banner_rows(info: SandboxInfo) -> list[tuple[str, str]]:
    """(label, value) pairs of the banner: where the API is, the token and the demo's IDs."""
    images = info.images
    return [
        ("API", f"{info.url}  (docs: {info.url}/docs)"),
        ("token", f"{info.token}  (jobs:read, jobs:write)"),
        ("AWS double", f"{info.aws_endpoint_url}  (fake credentials; nothing reaches AWS)"),
        ("source account", f"{info.source_account_id}, region {info.region}"),
        ("KMS key", images.key.key_arn),
        ("encrypted AMI", f"{images.encrypted.image_id}  (2 snapshots, the key above)"),
        (
            "AWS-managed AMI",
            f"{images.aws_managed.image_id}  (alias/aws/ebs: shared only as a re-encrypted copy)",
        ),
        ("destination keys", f"{images.copy_key_alias} in {', '.join(DEMO_ACCOUNTS)} (for copies)"),
        ("another Region", f"{OTHER_REGION}, key {OTHER_REGION_KEY_ALIAS} (for --also-in)"),
        ("unencrypted AMI", images.unencrypted.image_id),
    ]


def print_banner(info: SandboxInfo, console: Console) -> None:
    """The URL, the token, the AMI IDs and commands to paste. Every row is one line, printed
    whole whatever the console's width (soft wrap: the terminal folds it, rich never cuts or
    breaks it), so that IDs and commands copy as they are, also when the output is piped."""
    from rich.markup import escape

    rows = banner_rows(info)
    width = max(len(name) for name, _ in rows) + 2
    console.print("[bold green]amishare sandbox is running[/bold green]", soft_wrap=True)
    for name, value in rows:
        console.print(f"[bold]{escape(name.ljust(width))}[/bold]{escape(value)}", soft_wrap=True)
    console.print("\n[bold]Try it[/bold] (in another terminal):", soft_wrap=True)
    for comment, command in try_it_commands(info):
        if comment:
            console.print(f"[dim]# {escape(comment)}[/dim]", soft_wrap=True)
        console.print(escape(command), soft_wrap=True, highlight=False)
    console.print(
        "\nCtrl-C stops the sandbox; its database and AWS state are thrown away.", soft_wrap=True
    )
