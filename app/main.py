"""create_app(): routers, error handlers, and a lifespan that owns the engine, the AWS gateway
and the embedded worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.api.auth import TokenBook
from app.api.authenticate import Authenticate
from app.api.body_limit import BodyLimit
from app.api.problems import PROBLEM_JSON, install_problem_handlers
from app.api.routes import jobs, ops, shares
from app.api.routes import metrics as metrics_route
from app.aws.boto_gateway import BotoAwsGateway
from app.aws.gateway import AwsGateway
from app.config import Settings
from app.db.engine import make_engine, make_session_factory
from app.db.job_repository import JobRepository
from app.db.key_locks import PostgresKeyLocks, ProcessKeyLocks
from app.heap import settle_heap
from app.metrics import Metrics
from app.service.jobs import JobPolicy
from app.service.progress_cache import ProgressCache
from app.service.status_cache import StatusCache
from app.worker.executor import Executor
from app.worker.ports import KeyLocks
from app.worker.runner import Worker
from app.worker.settings import executor_settings, worker_settings

log = logging.getLogger(__name__)
API_VERSION = "1.0.0"


def _operation_id(route: APIRoute) -> str:
    """Stable operation ids: the route function's name (create_job, get_job, …)."""
    return route.name


def create_app(
    settings: Settings | None = None, gateway: AwsGateway | None = None, *, serving: bool = False
) -> FastAPI:
    """`serving`: this process is a long-running server (`amishare serve`): see settle_heap."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        sessions = make_session_factory(engine)
        aws: AwsGateway = gateway or BotoAwsGateway.from_settings(settings)
        if isinstance(aws, BotoAwsGateway):
            aws.observe_calls(metrics.observe_aws_call)
            if serving:
                await settle_heap(aws)
        locks: KeyLocks = ProcessKeyLocks() if settings.is_sqlite else PostgresKeyLocks(engine)
        app.state.metrics = metrics
        app.state.progress_cache = ProgressCache()
        status_cache = StatusCache(settings.status_cache_seconds)
        app.state.status_cache = status_cache
        app.state.engine = engine
        app.state.sessions = sessions
        app.state.tokens = TokenBook(settings.api_tokens)
        app.state.own_account = aws.own_account_id
        app.state.job_policy = JobPolicy.from_settings(settings)
        worker: Worker | None = None
        stop = asyncio.Event()
        worker_task: asyncio.Task[None] | None = None
        if settings.embedded_worker:
            executor = Executor(aws, locks, executor_settings(settings))
            worker = Worker(
                sessions, executor, worker_settings(settings), on_finished=metrics.job_finished
            )
            worker_task = asyncio.create_task(worker.run(stop), name="embedded worker")
        app.state.worker = worker
        app.state.wake_worker = worker.wake if worker else _nothing
        refresher: asyncio.Task[None] | None = None
        if status_cache.enabled:

            async def read_versions(job_ids: Sequence[str]) -> dict[str, int]:
                async with sessions() as session:
                    return await JobRepository(session).versions(job_ids)

            refresher = asyncio.create_task(
                status_cache.keep_fresh(read_versions, stop), name="job status cache"
            )
        try:
            yield
        finally:
            stop.set()
            if refresher is not None:
                refresher.cancel()  # nothing to finish: it only confirms versions
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            if worker_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            if gateway is None and isinstance(aws, BotoAwsGateway):
                await aws.aclose()
            await engine.dispose()

    app = FastAPI(
        title="amishare",
        version=API_VERSION,
        summary="Share and revoke KMS-encrypted AMIs across AWS accounts, as durable jobs.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    install_problem_handlers(app)
    # Added last, so outermost: a caller is authenticated before its body's size counts.
    app.add_middleware(BodyLimit)
    app.add_middleware(Authenticate)
    app.include_router(ops.router)
    app.include_router(metrics_route.router)
    app.include_router(jobs.router)
    app.include_router(shares.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _problems_as_problem_json(FastAPI.openapi(app))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _problems_as_problem_json(spec: dict[str, Any]) -> None:
    """FastAPI documents a response model as application/json; error answers are sent as
    application/problem+json, so that is the media type their schema belongs to."""
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[:1] in ("4", "5") and "application/json" in content:
                    schema = content.pop("application/json")
                    content.setdefault(PROBLEM_JSON, {}).update(schema)


def _nothing() -> None:
    return None
