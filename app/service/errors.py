"""Errors the service raises; each knows its HTTP status, and one handler renders them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str
    location: str = "body"  # body | query | header | path


class ServiceError(Exception):
    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class InvalidRequestError(ServiceError):
    status = 422
    title = "Invalid request"
    slug = "validation"

    @classmethod
    def of(cls, field: str, message: str, location: str = "body") -> InvalidRequestError:
        return cls(f"{field}: {message}", [FieldError(field, message, location)])


class NotFoundError(ServiceError):
    status = 404
    title = "Not found"
    slug = "not-found"


class ConflictError(ServiceError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class UnavailableError(ServiceError):
    status = 503
    title = "Service unavailable"
    slug = "unavailable"
