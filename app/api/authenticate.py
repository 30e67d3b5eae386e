"""Bearer authentication of every /v1 request, as a pure ASGI middleware that runs before
anything reads the body: an unknown caller gets a 401, never a 413 or a 422 about its body."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.auth import Caller
from app.api.problems import problem

if TYPE_CHECKING:
    from app.runtime import Runtime

CALLER = "caller"  # the key of the identified Caller in the request scope's state
UNAUTHENTICATED = "Missing or unknown bearer token."
CHALLENGE = {"WWW-Authenticate": "Bearer"}
PROTECTED = "/v1/"


def _bearer_token(scope: Scope) -> str | None:
    """The token of `Authorization: Bearer <token>`, as FastAPI's HTTPBearer reads it."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def identify(scope: Scope) -> Caller | None:
    token = _bearer_token(scope)
    if token is None:
        return None
    runtime: Runtime | None = getattr(scope["app"].state, "runtime", None)
    return runtime.tokens.identify(token) if runtime is not None else None


def scope_for(method: str) -> str:
    """GET (and HEAD) routes need jobs:read; every other method needs jobs:write."""
    return "jobs:read" if method in ("GET", "HEAD") else "jobs:write"


def lacks_scope(scope: str) -> str:
    return f"This token lacks the '{scope}' scope."


def caller_of(scope: Scope) -> Caller | None:
    """The caller Authenticate put in this request's state (None outside /v1)."""
    state: dict[str, object] = scope.get("state", {})
    caller = state.get(CALLER)
    return caller if isinstance(caller, Caller) else None


class Authenticate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # served under a prefix: the route's own path
            path = path[len(root) :]
        if scope["type"] != "http" or not (path.startswith(PROTECTED) or path == "/v1"):
            await self.app(scope, receive, send)
            return
        caller = identify(scope)
        if caller is None:
            await problem(401, UNAUTHENTICATED, headers=CHALLENGE)(scope, receive, send)
            return
        # The scope a method needs is checked here too, before the body is read: a token that
        # may not write gets 403 whatever it sends (the routes check it again).
        needed = scope_for(scope.get("method", "GET"))
        if needed not in caller.scopes:
            await problem(403, lacks_scope(needed))(scope, receive, send)
            return
        # A copy: a server may hand every request the same lifespan state.
        scope["state"] = {**scope.get("state", {}), CALLER: caller}
        await self.app(scope, receive, send)
