"""/metrics: Prometheus text, no token (docs/api.md, "Operations")."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import RuntimeDep, SessionDep
from app.service.gauges import refresh_gauges

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
    summary="Prometheus metrics",
)
async def metrics(runtime: RuntimeDep, session: SessionDep) -> Response:
    registry = runtime.metrics
    await refresh_gauges(session, registry)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
