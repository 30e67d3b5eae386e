"""Bearer tokens with scopes (docs/api.md, "Authentication")."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from app.config import ApiToken
from app.domain.guardrails import (
    ANY_DESTINATION,
    ANY_SOURCE,
    DestinationGuardrail,
    SourceGuardrail,
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the token's name, its scopes, and its own limits on what its jobs may
    name (checked on top of the service's allowed lists)."""

    name: str
    scopes: frozenset[str]
    sources: SourceGuardrail = ANY_SOURCE
    destinations: DestinationGuardrail = ANY_DESTINATION


class TokenBook:
    """Known tokens by their sha256 digests; a presented token is compared with every one of
    them in constant time, so neither the match nor its position leaks through timing."""

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._entries = [
            (t.digest, Caller(t.name, frozenset(t.scopes), t.sources, t.destinations))
            for t in tokens
        ]

    def identify(self, presented: str) -> Caller | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: Caller | None = None
        for known, caller in self._entries:
            if hmac.compare_digest(known, digest):
                found = caller
        return found
