"""ShareService: what is shared right now, read from the ledger."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.ledger import ShareFilter, ShareLedger
from app.db.models import Share
from app.jobs.cursors import decode_cursor, encode_cursor, not_a_cursor
from app.jobs.service import Page


class ShareService:
    def __init__(self, session: AsyncSession) -> None:
        self.ledger = ShareLedger(session)

    async def list_shares(
        self, filters: ShareFilter, limit: int, cursor: str | None
    ) -> Page[Share]:
        after = decode_cursor(cursor, tuple)
        if after is not None and len(after) != 3:
            raise not_a_cursor()
        rows = list(await self.ledger.page(filters, limit + 1, after))
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if rows else None
        next_cursor = (
            encode_cursor([last.image_id, last.region, last.principal]) if more and last else None
        )
        return Page(rows, next_cursor)
