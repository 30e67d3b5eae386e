"""Copies of an image: into each destination (`copy`), and in the source, re-encrypted with a
customer-managed key (`reencrypt`) or into another Region."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# A copy the service makes in the source carries this tag: found again on AWS by it if the
# database lost the copy's ID.
SOURCE_IMAGE_TAG = "amishare:source-image-id"
CLIENT_TOKEN_MAX = 64  # CopyImage's ClientToken: at most 64 ASCII characters


@dataclass(frozen=True, slots=True)
class CopyOptions:
    """`copy` of a share job: each destination account copies the shared image."""

    kms_key_id: str | None = None  # a key of the destination; None: its default EBS key
    copy_tags: bool = True


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    """An image's tags without the service's own (they describe the source's copies)."""
    return {k: v for k, v in tags.items() if not k.startswith("amishare:")}


def client_token(*parts: str) -> str:
    """The same copy asked for again gets the same token, so AWS makes it once."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"amishare-{digest}"[:CLIENT_TOKEN_MAX]


def copy_name(image_name: str | None, image_id: str, what: str) -> str:
    """A copy's Name (unique per account and Region in EC2): the source's, marked."""
    base = image_name or image_id
    return f"{base} ({what} {image_id})"[:128]


@dataclass(frozen=True, slots=True)
class SourceCopy:
    """A copy the service made (or is making) in the source account: of `source_image_id` in
    `source_region`, into `region`, re-encrypted with `kms_key_id`."""

    source_image_id: str
    source_region: str
    region: str
    kms_key_id: str
    client_token: str
    image_id: str | None = None  # once CopyImage has answered
    state: str = "pending"  # pending | available | failed
