"""create_app(): routers, error handlers, and a lifespan that opens the Runtime (engine, AWS
gateway, embedded worker) and runs the background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.api.authenticate import Authenticate
from app.api.body_limit import BodyLimit
from app.api.problems import PROBLEM_JSON, install_problem_handlers
from app.api.routes import jobs, ops, plans, shares
from app.api.routes import metrics as metrics_route
from app.aws.gateway import AwsGateway
from app.config import Settings
from app.db.job_repository import JobRepository
from app.runtime import Runtime, open_runtime

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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(
            settings, gateway=gateway, run_jobs=settings.embedded_worker, long_running=serving
        ) as runtime:
            app.state.runtime = runtime
            background = _start_background(runtime)
            try:
                yield
            finally:
                runtime.stop.set()
                await _stop_background(background)

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
    app.include_router(plans.router)
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


def _start_background(runtime: Runtime) -> list[asyncio.Task[None]]:
    """The embedded worker, the refresher that keeps remembered job answers confirmed, and the
    event loop's watch."""
    tasks = [asyncio.create_task(runtime.watch_event_loop(), name="event loop watch")]
    if runtime.worker is not None:
        tasks.append(asyncio.create_task(runtime.worker.run(runtime.stop), name="embedded worker"))
    cache = runtime.status_cache
    if cache.enabled:

        async def read_versions(job_ids: Sequence[str]) -> dict[str, int]:
            async with runtime.sessions() as session:
                return await JobRepository(session).versions(job_ids)

        refresher = cache.keep_fresh(read_versions, runtime.stop)
        tasks.append(asyncio.create_task(refresher, name="job status cache"))
    return tasks


async def _stop_background(tasks: list[asyncio.Task[None]]) -> None:
    """The worker drains (it watches `stop`); the others have nothing to finish."""
    for task in tasks:
        if task.get_name() != "embedded worker":
            task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
