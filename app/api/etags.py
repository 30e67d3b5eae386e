"""If-None-Match, parsed once: which of a job's versions the client already has."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import Request
from fastapi.exceptions import RequestValidationError

MAX_LENGTH = 1024
# A version ETag, "v<digits>", in ASCII digits: str.isdigit() also takes '²', which int() refuses.
_VERSION_TAG = re.compile(r'"v([0-9]{1,18})"')


@dataclass(frozen=True, slots=True)
class IfNoneMatch:
    tags: frozenset[str]  # as sent, quoted, weakness marks removed
    any: bool  # `*`

    @classmethod
    def parse(cls, header: str | None) -> IfNoneMatch:
        candidates = {c.strip().removeprefix("W/") for c in (header or "").split(",")}
        candidates.discard("")
        return cls(frozenset(candidates - {"*"}), "*" in candidates)

    def matches(self, etag: str) -> bool:
        return self.any or etag in self.tags

    @property
    def newest_version(self) -> int:
        """The highest version named (0 if none): a client that has seen a newer version than
        the one remembered is answered from the database."""
        versions = (_VERSION_TAG.fullmatch(tag) for tag in self.tags)
        return max((int(v[1]) for v in versions if v is not None), default=0)


def if_none_match_of(request: Request) -> IfNoneMatch:
    """The request's If-None-Match, parsed; longer than MAX_LENGTH is a 422 like any header."""
    header = request.headers.get("if-none-match")
    if header is not None and len(header) > MAX_LENGTH:
        raise RequestValidationError(
            [
                {
                    "type": "string_too_long",
                    "loc": ("header", "if-none-match"),
                    "msg": f"String should have at most {MAX_LENGTH} characters",
                    "input": header,
                    "ctx": {"max_length": MAX_LENGTH},
                }
            ]
        )
    return IfNoneMatch.parse(header)


# The header as OpenAPI documents it (the polled route reads it in its one dependency).
OPENAPI_PARAMETER = {
    "in": "header",
    "name": "if-none-match",
    "required": False,
    "schema": {
        "anyOf": [{"maxLength": MAX_LENGTH, "type": "string"}, {"type": "null"}],
        "title": "If-None-Match",
    },
}
