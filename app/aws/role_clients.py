"""One EC2 and one KMS client per region for every assumed destination role.

Creating a botocore client costs ~20 ms of CPU (it builds the service's methods); for a job
with 1,000 destinations that was most of the job's time. These clients read their credentials
when each request is signed, from the asyncio task that makes it, so one client serves every
destination role, each task acting as exactly the role it assumed.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, cast

from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentialResolver, AioCredentials
from aiobotocore.session import AioSession
from botocore.credentials import CredentialProvider, ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError

from app.aws.credentials import current_role

if TYPE_CHECKING:
    from types_aiobotocore_ec2 import EC2Client
    from types_aiobotocore_kms import KMSClient


class TaskCredentials(AioCredentials):
    """The credentials of whichever role the current task is acting as."""

    def __init__(self) -> None:
        super().__init__("unset", "unset", method="amishare-task")

    async def get_frozen_credentials(self) -> ReadOnlyCredentials:  # type: ignore[override]
        role = current_role()
        if role is None:
            raise NoCredentialsError()
        return await role.frozen()


class _TaskCredentialProvider(CredentialProvider):
    METHOD = "amishare-task"

    async def load(self) -> TaskCredentials:
        return TaskCredentials()


class SharedRoleClients:
    def __init__(
        self, *, endpoint_url: str | None, config: AioConfig, loader_from: Any = None
    ) -> None:
        self._session = AioSession()
        resolver = AioCredentialResolver(providers=[_TaskCredentialProvider()])
        self._session.register_component("credential_provider", resolver)
        if loader_from is not None:
            # Parsing the EC2 service model takes seconds: read it once per process.
            self._session.register_component(
                "data_loader", loader_from.get_component("data_loader")
            )
        self._endpoint_url = endpoint_url
        self._config = config
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()
        self._clients: dict[tuple[str, str], Any] = {}

    async def ec2(self, region: str) -> EC2Client:
        return cast("EC2Client", await self._client("ec2", region))

    async def kms(self, region: str) -> KMSClient:
        return cast("KMSClient", await self._client("kms", region))

    async def _client(self, service: str, region: str) -> Any:
        async with self._lock:
            if (service, region) not in self._clients:
                create: Any = self._session.create_client
                client = create(
                    service,
                    region_name=region,
                    endpoint_url=self._endpoint_url,
                    config=self._config,
                )
                self._clients[service, region] = await self._stack.enter_async_context(client)
            return self._clients[service, region]

    async def aclose(self) -> None:
        async with self._lock:
            self._clients.clear()
            await self._stack.aclose()
