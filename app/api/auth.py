"""Bearer tokens with scopes (API.md, "Authentication")."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from app.config import ApiToken


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    scopes: frozenset[str]


class TokenBook:
    """Known tokens by their sha256 digests; a presented token is compared with every one of
    them in constant time, so neither the match nor its position leaks through timing."""

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._entries = [(t.digest, Caller(t.name, frozenset(t.scopes))) for t in tokens]

    def identify(self, presented: str) -> Caller | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: Caller | None = None
        for known, caller in self._entries:
            if hmac.compare_digest(known, digest):
                found = caller
        return found
