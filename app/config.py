"""Settings, read from AMISHARE_* environment variables (API.md, "Settings")."""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Scope = Literal["jobs:read", "jobs:write"]


class ApiToken(BaseModel):
    """One entry of AMISHARE_API_TOKENS: a plain token or the sha256 hex of one."""

    name: str = Field(min_length=1)
    token: str | None = Field(default=None, min_length=16, repr=False)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$", repr=False)
    scopes: list[Scope] = Field(default_factory=list)

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
    model_config = SettingsConfigDict(env_prefix="AMISHARE_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./amishare.db"
    api_tokens: list[ApiToken] = Field(default_factory=list, repr=False)

    aws_endpoint_url: str | None = None
    source_role_name: str | None = None
    destination_role_name: str | None = None
    # STS takes 2 to 1224 characters; a shorter one would fail every AssumeRole.
    external_id: str | None = Field(default=None, min_length=2, max_length=1224, repr=False)
    # Region used for STS and for finding the service's own account; jobs name their own region.
    aws_default_region: str = "us-east-1"

    # GET /v1/jobs/{id} may answer from memory what the database held at most this long ago
    # (0: read the database on every request); see app/jobs/status_cache.py.
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
    step_max_attempts: int = Field(default=6, ge=1, le=20)
    step_backoff_seconds: float = Field(default=0.2, gt=0)

    # Guardrail: when set, every destination must match one of these (accounts or org/OU ARNs;
    # a trailing '*' matches a prefix). Unset: any well-formed destination is allowed.
    allowed_destinations: Annotated[list[str] | None, NoDecode] = None

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("allowed_destinations", mode="before")
    @classmethod
    def _split_destinations(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                import json

                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

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


def load_settings() -> Settings:
    return Settings()
