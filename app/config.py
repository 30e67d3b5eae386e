"""Settings, read from AMISHARE_* environment variables (docs/api.md, "Settings")."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.domain.guardrails import (
    ANY_DESTINATION,
    ANY_SOURCE,
    DestinationGuardrail,
    JobGuardrails,
    SourceGuardrail,
)
from app.domain.retry import RetryPolicy

Scope = Literal["jobs:read", "jobs:write"]
# What STS accepts as a SourceIdentity: the worker names the job's token in its AssumeRole calls.
SOURCE_IDENTITY = r"^[A-Za-z0-9+=,.@_-]{2,64}$"


def _entry_texts(value: object) -> list[str] | None:
    """An allowed list as configured: None, a list of strings, a JSON list or a comma list."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("not a valid JSON list of entries") from None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("give a list of entries (strings), a JSON list or a comma list")
    return list(value)


def _destinations(value: object) -> DestinationGuardrail:
    if isinstance(value, DestinationGuardrail):
        return value
    return DestinationGuardrail.parse(_entry_texts(value))


def _sources(value: object) -> SourceGuardrail:
    if isinstance(value, SourceGuardrail):
        return value
    return SourceGuardrail.parse(_entry_texts(value))


# Allowed lists are parsed once, when settings load; a bad entry is a settings error naming it.
AllowedDestinations = Annotated[
    DestinationGuardrail,
    NoDecode,
    PlainValidator(_destinations, json_schema_input_type=list[str] | None),
    PlainSerializer(lambda guardrail: guardrail.texts),
]
AllowedSources = Annotated[
    SourceGuardrail,
    NoDecode,
    PlainValidator(_sources, json_schema_input_type=list[str] | None),
    PlainSerializer(lambda guardrail: guardrail.texts),
]


class ApiToken(BaseModel):
    """One entry of AMISHARE_API_TOKENS: a plain token or the sha256 hex of one, its scopes,
    and optionally its own allowed sources and destinations (within the service's)."""

    # Never echo what was given: it may be a token. Unknown keys are refused, not ignored, so
    # that a misspelt limit cannot leave a token unlimited.
    model_config = ConfigDict(hide_input_in_errors=True, extra="forbid")

    name: str = Field(pattern=SOURCE_IDENTITY)
    token: str | None = Field(default=None, min_length=16, repr=False)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$", repr=False)
    scopes: list[Scope] = Field(default_factory=list)
    sources: AllowedSources = ANY_SOURCE
    destinations: AllowedDestinations = ANY_DESTINATION

    @model_validator(mode="after")
    def _exactly_one_secret(self) -> ApiToken:
        if (self.token is None) == (self.sha256 is None):
            raise ValueError("give exactly one of 'token' or 'sha256'")
        return self

    @property
    def digest(self) -> bytes:
        if self.sha256 is not None:
            return bytes.fromhex(self.sha256)
        assert self.token is not None
        return hashlib.sha256(self.token.encode()).digest()


class Settings(BaseSettings):
    # hide_input_in_errors: a settings error must never print a token.
    model_config = SettingsConfigDict(
        env_prefix="AMISHARE_", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = "sqlite+aiosqlite:///./amishare.db"
    api_tokens: list[ApiToken] = Field(default_factory=list, repr=False)

    aws_endpoint_url: str | None = None
    source_role_name: str | None = None
    destination_role_name: str | None = None
    # STS takes 2 to 1224 characters; a shorter one would fail every AssumeRole.
    external_id: str | None = Field(default=None, min_length=2, max_length=1224, repr=False)
    # Region used for STS and for finding the service's own account; jobs name their own region.
    aws_default_region: str = "us-east-1"
    # Every AssumeRole passes the creating token's name as SourceIdentity (CloudTrail ties each
    # call to it); the roles' trust policies must then allow sts:SetSourceIdentity.
    set_source_identity: bool = True

    # GET /v1/jobs/{id} may answer from memory what the database held at most this long ago
    # (0: read the database on every request); see app/service/status_cache.py.
    status_cache_seconds: float = Field(default=0.25, ge=0, le=10)

    embedded_worker: bool = True
    worker_max_jobs: int = Field(default=4, ge=1, le=64)
    target_concurrency: int = Field(default=64, ge=1, le=512)
    lease_seconds: float = Field(default=30.0, gt=1)
    poll_interval_seconds: float = Field(default=0.5, gt=0)
    max_job_attempts: int = Field(default=5, ge=1)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)

    verify_timeout_seconds: float = Field(default=120.0, gt=0)
    verify_initial_delay_seconds: float = Field(default=1.0, gt=0)
    # Copies (`copy`, `reencrypt`): how long one may take to become available, and how often
    # it is looked at meanwhile (every quarter of the time waited, within these bounds).
    copy_timeout_seconds: float = Field(default=3600.0, gt=0)
    copy_poll_seconds: float = Field(default=1.0, gt=0)
    copy_poll_max_seconds: float = Field(default=60.0, gt=0)
    step_max_attempts: int = Field(default=6, ge=1, le=20)
    step_backoff_seconds: float = Field(default=0.2, gt=0)

    # Guardrails (app/domain/guardrails.py): when set, every destination, and every job's
    # source account, must be allowed by one entry. Unset: any well-formed one is allowed.
    allowed_destinations: AllowedDestinations = ANY_DESTINATION
    allowed_sources: AllowedSources = ANY_SOURCE

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("api_tokens")
    @classmethod
    def _distinct_tokens(cls, tokens: list[ApiToken]) -> list[ApiToken]:
        """Names identify a token in jobs and in AWS; a secret must identify one token."""
        by_name: dict[str, ApiToken] = {}
        by_digest: dict[bytes, ApiToken] = {}
        for token in tokens:
            if token.name in by_name:
                raise ValueError(f"two tokens are named {token.name!r}")
            if token.digest in by_digest:
                raise ValueError(
                    f"tokens {by_digest[token.digest].name!r} and {token.name!r} "
                    "have the same secret"
                )
            by_name[token.name] = token
            by_digest[token.digest] = token
        return tokens

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value.removeprefix("sqlite:///")
        return value

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """Bounded retries of throttled and 5xx AWS calls, on top of botocore's own."""
        return RetryPolicy(
            max_attempts=self.step_max_attempts, base_delay=self.step_backoff_seconds
        )

    @cached_property
    def job_guardrails(self) -> JobGuardrails:
        """What a worker checks again before a job changes anything."""
        return JobGuardrails(
            self.allowed_sources,
            self.allowed_destinations,
            {t.name: (t.sources, t.destinations) for t in self.api_tokens},
        )

    @property
    def destination_role_configured(self) -> bool:
        return bool(self.destination_role_name)

    @property
    def own_account_only(self) -> bool:
        """Without a source role the service acts with its own credentials: in its own
        account only."""
        return not self.source_role_name

    @property
    def skip_locked(self) -> bool:
        """PostgreSQL claims with FOR UPDATE SKIP LOCKED; SQLite has one embedded worker."""
        return not self.is_sqlite

    def token_named(self, name: str) -> ApiToken | None:
        """The configured token a job's `created_by` names (None: no such token any more)."""
        return next((token for token in self.api_tokens if token.name == name), None)
