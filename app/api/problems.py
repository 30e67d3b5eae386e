"""Every error answer is application/problem+json (RFC 9457), with no internals in it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.text import echo
from app.db.errors import CONNECTION_ERRORS, database_unavailable
from app.service.errors import ServiceError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
# What a 503 says to a client: the cause (the database, AWS) is expected back shortly.
RETRY_AFTER = {"Retry-After": "5"}
# A 422 for a huge body stays small: this many field errors at most, each message this long.
MAX_FIELD_ERRORS = 50
MAX_MESSAGE_LENGTH = 300
# Why FastAPI could not parse a body (its 400's cause), said as a 422 on the body.
BODY_PARSE_FAILURES: tuple[tuple[type[BaseException], str], ...] = (
    (UnicodeDecodeError, "not UTF-8"),
    (RecursionError, "nested too deeply"),
    (ValueError, "a number with too many digits"),  # int() refuses over 4,300 digits
)


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:amishare:problem:{slug}" if slug else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_name(location: Sequence[Any]) -> tuple[str, str]:
    """('body', 'account_ids', 2) -> ('account_ids[2]', 'body')."""
    place = str(location[0]) if location else "body"
    parts = list(location[1:]) if place in ("body", "query", "path", "header") else list(location)
    name = ""
    if place == "header" and parts:
        # FastAPI reports a header by its lower-case alias; name it as clients send it.
        return "-".join(word.capitalize() for word in echo(str(parts[0])).split("-")), place
    for part in parts:
        # A part may be client input (an unknown field's or a label's key): shown cut short.
        text = echo(str(part))
        name += f"[{part}]" if isinstance(part, int) else (f".{text}" if name else text)
    return name or place, place


def _validation_errors(error: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for item in error.errors()[:MAX_FIELD_ERRORS]:
        field, place = _field_name(item.get("loc", ()))
        message = str(item.get("msg", "invalid"))
        if item.get("type") == "json_invalid":
            # loc is ('body', <character position>): the body as a whole is not JSON.
            field, place = "body", "body"
            message = f"not valid JSON ({item.get('ctx', {}).get('error', 'decode error')})"
        elif item.get("type") == "string_pattern_mismatch":
            message = f"'{echo(str(item.get('input')))}' is not a valid value"
        if len(message) > MAX_MESSAGE_LENGTH:
            message = message[:MAX_MESSAGE_LENGTH] + "…"
        errors.append({"field": field, "message": message, "location": place})
    return errors


def _invalid(errors: list[dict[str, str]], more: int = 0) -> JSONResponse:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    if more:
        detail += f"; and {more} more"
    return problem(422, detail, slug="validation", title="Invalid request", errors=errors)


async def _on_validation(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = _validation_errors(error)
    return _invalid(errors, len(error.errors()) - len(errors))


async def _on_service_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    errors = [
        {"field": e.field, "message": e.message, "location": e.location} for e in error.errors
    ]
    return problem(
        error.status,
        error.detail,
        slug=error.slug,
        title=error.title,
        errors=errors if error.status == 422 else None,
        headers=RETRY_AFTER if error.status == 503 else None,
    )


async def _on_http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 400:
        # FastAPI's 400 for a body its JSON decoder gave up on: malformed JSON, so a 422.
        for cause, reason in BODY_PARSE_FAILURES:
            if isinstance(error.__cause__, cause):
                message = f"not valid JSON ({reason})"
                return _invalid([{"field": "body", "message": message, "location": "body"}])
    headers = dict(error.headers) if error.headers else None
    if error.status_code == 413:
        return problem(413, str(error.detail), slug="too-large", headers=headers)
    return problem(error.status_code, str(error.detail), headers=headers)


async def _on_database_error(request: Request, error: Exception) -> JSONResponse:
    if not database_unavailable(error):
        return await _on_unexpected(request, error)  # a bug, not an outage: never "try again"
    log.warning("database unavailable", extra={"error": type(error).__name__})
    return problem(
        503,
        "The database is unavailable; nothing was changed. Try again shortly.",
        slug="unavailable",
        headers=RETRY_AFTER,
    )


async def _on_unexpected(_request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=error)
    return problem(500, "An unexpected error occurred; it has been logged.")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(ServiceError, _on_service_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    for database_error in (*CONNECTION_ERRORS, DBAPIError):
        app.add_exception_handler(database_error, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)
