"""/v1/shares: the ledger of what is shared right now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.deps import Reader, SessionDep
from app.api.fields import Region
from app.api.routes.jobs import PRINCIPAL, PROBLEMS, Cursor, Limit
from app.api.schemas import ShareOut, SharePage
from app.db.ledger import ShareFilter
from app.domain.principals import IMAGE_ID
from app.service.shares import ShareService

router = APIRouter(prefix="/v1/shares", tags=["shares"])


async def _share_service(session: SessionDep) -> ShareService:
    return ShareService(session)


@router.get(
    "",
    response_model=SharePage,
    responses=PROBLEMS,
    summary="Active shares, by image, region and principal",
)
async def list_shares(
    service: Annotated[ShareService, Depends(_share_service)],
    _caller: Reader,
    image_id: Annotated[str | None, Query(max_length=32, pattern=IMAGE_ID.pattern)] = None,
    region: Annotated[Region | None, Query()] = None,
    principal: Annotated[str | None, Query(max_length=256, pattern=PRINCIPAL)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> SharePage:
    filters = ShareFilter(image_id=image_id, region=region, principal=principal)
    found = await service.list_shares(filters, limit, cursor)
    return SharePage(
        items=[ShareOut.of(s, found.key_access_of(s)) for s in found.page.items],
        next_cursor=found.page.next_cursor,
    )
