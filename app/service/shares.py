"""ShareService: what is shared right now, read from the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.ledger import KeyAccessLedger, ShareFilter, ShareLedger
from app.db.models import KeyAccessRow, Share
from app.service.cursors import Page, decode_cursor, not_a_cursor, page_of


@dataclass(frozen=True, slots=True)
class SharePage:
    page: Page[Share]
    key_access: dict[str, list[KeyAccessRow]]  # by principal

    def key_access_of(self, share: Share) -> Sequence[KeyAccessRow]:
        return self.key_access.get(share.principal, [])


class ShareService:
    def __init__(self, session: AsyncSession) -> None:
        self.ledger = ShareLedger(session)
        self.key_access = KeyAccessLedger(session)

    async def list_shares(self, filters: ShareFilter, limit: int, cursor: str | None) -> SharePage:
        after = decode_cursor(cursor, tuple)
        if after is not None and len(after) != 3:
            raise not_a_cursor()
        page = page_of(
            await self.ledger.page(filters, limit + 1, after),
            limit,
            lambda share: [share.image_id, share.region, share.principal],
        )
        rows = page.items
        keys = sorted({key for row in rows for key in row.kms_key_ids})
        found = await self.key_access.of_keys(keys, sorted({row.principal for row in rows}))
        by_principal: dict[str, list[KeyAccessRow]] = {}
        for access in found:
            by_principal.setdefault(access.principal, []).append(access)
        return SharePage(page, by_principal)
