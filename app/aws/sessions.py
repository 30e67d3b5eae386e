"""Plumbing under the boto gateway: client settings, credentials, and how one AWS call is made."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.parsers import ResponseParserError

from app.aws.call_errors import AwsCallError, ErrorKind
from app.aws.credentials import Credentials, mark_credentials_stale

if TYPE_CHECKING:
    from types_aiobotocore_ec2 import EC2Client
    from types_aiobotocore_kms import KMSClient
    from types_aiobotocore_sts import STSClient

logger = logging.getLogger(__name__)

# (api, outcome: "ok" or the error code, seconds) for every logical AWS call, retries included.
CallObserver = Callable[[str, str, float], None]

# Network failures that never reached an AWS answer; classified transient as "ConnectionError".
_CONNECTION_ERRORS = (ConnectionError, HTTPClientError, aiohttp.ClientError, asyncio.TimeoutError)
_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError)


def client_config(*, max_pool_connections: int = 64) -> AioConfig:
    """botocore `standard` retries (docs/aws.md): jittered backoff on throttling and 5xx,
    3 attempts."""
    return AioConfig(
        # total_max_attempts counts the first try; botocore reads `max_attempts` as retries (+1).
        retries={"mode": "standard", "total_max_attempts": 3},
        max_pool_connections=max_pool_connections,
        connect_timeout=5,
        read_timeout=30,
    )


def role_arn(account_id: str, role_name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:role/{role_name}"


def call_error(operation: str, error: ClientError) -> AwsCallError:
    """An AWS answer that said no, with what a person needs to act on it."""
    details = error.response.get("Error", {})
    metadata = error.response.get("ResponseMetadata", {})
    return AwsCallError(
        operation,
        details.get("Code") or "Unknown",
        details.get("Message") or "",
        status=metadata.get("HTTPStatusCode"),
        request_id=metadata.get("RequestId"),
    )


def connection_error(operation: str, error: BaseException) -> AwsCallError:
    # botocore's text names the endpoint, never the request's headers or credentials.
    detail = str(error) or type(error).__name__
    return AwsCallError(operation, "ConnectionError", f"no answer from AWS: {detail}")


def unreadable_answer(operation: str, error: ResponseParserError) -> AwsCallError:
    # botocore raises this for a 5xx whose body is not AWS's error format: a server-side failure.
    return AwsCallError(operation, "InternalFailure", f"unreadable answer from AWS: {error}"[:300])


def credentials_error(operation: str, error: BaseException) -> AwsCallError:
    return AwsCallError(operation, "NoCredentials", f"no usable AWS credentials ({error})")


def as_call_error(operation: str, error: BaseException) -> AwsCallError | None:
    """The AwsCallError for a botocore or network failure; None for anything else (a bug)."""
    if isinstance(error, ClientError):
        return call_error(operation, error)
    if isinstance(error, _CONNECTION_ERRORS):
        return connection_error(operation, error)
    if isinstance(error, ResponseParserError):
        return unreadable_answer(operation, error)
    if isinstance(error, _CREDENTIAL_ERRORS):
        return credentials_error(operation, error)
    return None


class CallRecorder:
    """Turns botocore failures into AwsCallError and reports every call to the metrics hook."""

    def __init__(self, on_call: CallObserver | None = None) -> None:
        self._observers: list[CallObserver] = [on_call] if on_call else []

    def add_observer(self, on_call: CallObserver) -> None:
        self._observers.append(on_call)

    @contextmanager
    def call(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except BaseException as error:
            converted = as_call_error(operation, error)
            outcome = converted.code if converted else type(error).__name__
            if converted is None:
                raise
            if converted.kind is ErrorKind.EXPIRED_CREDENTIALS:
                mark_credentials_stale()  # the retry signs with the role assumed again
            raise converted from error
        finally:
            self._report(operation, outcome, time.perf_counter() - started)

    def _report(self, operation: str, outcome: str, seconds: float) -> None:
        for observer in self._observers:
            try:
                observer(operation, outcome, seconds)
            except Exception:
                # A broken metrics hook must never fail the AWS step it measures.
                logger.exception("on_call hook failed for %s", operation)


class AccountClients:
    """The clients of one set of credentials in one region: opened on first use, closed together."""

    def __init__(
        self,
        session: Any,
        *,
        region: str,
        endpoint_url: str | None,
        config: AioConfig,
        credentials: Credentials | None,
    ) -> None:
        self._session = session
        self._client_kwargs: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "config": config,
            **(credentials.client_kwargs() if credentials else {}),
        }
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()
        self._clients: dict[str, Any] = {}

    async def ec2(self) -> EC2Client:
        return cast("EC2Client", await self._client("ec2"))

    async def kms(self) -> KMSClient:
        return cast("KMSClient", await self._client("kms"))

    async def sts(self) -> STSClient:
        return cast("STSClient", await self._client("sts"))

    async def _client(self, service: str) -> Any:
        # A lock, so that concurrent first calls share one client (and one connection pool).
        async with self._lock:
            if service not in self._clients:
                client = self._session.client(service, **self._client_kwargs)
                self._clients[service] = await self._stack.enter_async_context(client)
            return self._clients[service]

    async def aclose(self) -> None:
        async with self._lock:
            self._clients.clear()  # a later call opens fresh clients instead of closed ones
            await self._stack.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
