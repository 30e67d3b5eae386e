"""Copies the service made in the source account, one per (image, Region, key), reused."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import ImageCopy
from app.db.types import utcnow
from app.domain.copies import SourceCopy


def _record(row: ImageCopy) -> SourceCopy:
    return SourceCopy(
        source_image_id=row.source_image_id,
        source_region=row.source_region,
        region=row.region,
        kms_key_id=row.kms_key_id,
        client_token=row.client_token,
        image_id=row.image_id,
        state=row.state,
    )


class ImageCopies:
    """Rows of one source image change only under the job that holds that image."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(
        self, source_image_id: str, source_region: str, region: str, kms_key_id: str
    ) -> SourceCopy | None:
        row = await self._row(source_image_id, source_region, region, kms_key_id)
        return _record(row) if row is not None else None

    async def save(self, copy: SourceCopy, source_account_id: str) -> None:
        row = await self._row(
            copy.source_image_id, copy.source_region, copy.region, copy.kms_key_id
        )
        if row is None:
            self.session.add(
                ImageCopy(
                    source_account_id=source_account_id,
                    source_image_id=copy.source_image_id,
                    source_region=copy.source_region,
                    region=copy.region,
                    kms_key_id=copy.kms_key_id,
                    client_token=copy.client_token,
                    image_id=copy.image_id,
                    state=copy.state,
                )
            )
            await self.session.flush()
            return
        await self.session.execute(
            update(ImageCopy)
            .where(col(ImageCopy.id) == row.id)
            .values(
                client_token=copy.client_token,
                image_id=copy.image_id,
                state=copy.state,
                updated_at=utcnow(),
            )
        )

    async def copies_of(self, source_image_id: str, region: str) -> list[str]:
        """Copies of the image the service made in `region`: re-encrypted ones in the image's own
        Region, or the image's copy in another Region."""
        query = select(col(ImageCopy.image_id)).where(
            col(ImageCopy.source_image_id) == source_image_id,
            col(ImageCopy.region) == region,
            col(ImageCopy.image_id).is_not(None),
        )
        return [i for i in (await self.session.execute(query)).scalars().all() if i]

    async def _row(
        self, source_image_id: str, source_region: str, region: str, kms_key_id: str
    ) -> ImageCopy | None:
        query = select(ImageCopy).where(
            col(ImageCopy.source_image_id) == source_image_id,
            col(ImageCopy.source_region) == source_region,
            col(ImageCopy.region) == region,
            col(ImageCopy.kms_key_id) == kms_key_id,
        )
        return (await self.session.execute(query)).scalar_one_or_none()
