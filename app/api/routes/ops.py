"""Operations: liveness, readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import RuntimeDep
from app.api.problems import RETRY_AFTER, problem
from app.api.schemas import Health, Problem

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Problem, "description": "The database does not answer"}},
    summary="The database answers",
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    try:
        async with asyncio.timeout(3), runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        return problem(
            503, "The database does not answer.", slug="unavailable", headers=RETRY_AFTER
        )
    return JSONResponse({"status": "ok"})
