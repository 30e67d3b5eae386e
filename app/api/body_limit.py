"""A limit on the size of every request body, as a pure ASGI middleware (no per-request task or
response wrapping: the status route is polled thousands of times a second)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem

MAX_BODY_BYTES = 1_048_576
TOO_LARGE = f"The request body is larger than the limit of {MAX_BODY_BYTES} bytes (1 MiB)."


class BodyTooLarge(HTTPException):
    """Raised while the body streams in; FastAPI passes it on and problems.py answers 413."""

    def __init__(self) -> None:
        super().__init__(413, TOO_LARGE)


def _declared_length(scope: Scope) -> int | None:
    """Content-Length, if the request has a well-formed one."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            digits = value.strip().lstrip(b"0") or b"0"
            # ASCII digits only; more than 16 of them is more than any limit here.
            if not digits.isdigit():
                return None
            return int(digits) if len(digits) <= 16 else 10**16
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > MAX_BODY_BYTES:
            # Refused before a byte of it is read.
            await problem(413, TOO_LARGE, slug="too-large")(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            # A chunked body (or one longer than it said) is cut off once it passes the limit.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise BodyTooLarge
            return message

        await self.app(scope, counted, send)
