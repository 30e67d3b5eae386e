"""/metrics: Prometheus text, no token (docs/api.md, "Operations")."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import SessionDep
from app.metrics import Metrics
from app.service.gauges import refresh_gauges

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
    summary="Prometheus metrics",
)
async def metrics(request: Request, session: SessionDep) -> Response:
    registry: Metrics = request.app.state.metrics
    await refresh_gauges(session, registry)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
