"""Worker and executor settings, taken from the service Settings."""

from __future__ import annotations

from app.config import Settings
from app.domain.guardrails import JobGuardrails
from app.worker.executor import ExecutorSettings
from app.worker.retry import RetryPolicy
from app.worker.runner import WorkerSettings


def executor_settings(settings: Settings) -> ExecutorSettings:
    return ExecutorSettings(
        target_concurrency=settings.target_concurrency,
        retry=RetryPolicy(
            max_attempts=settings.step_max_attempts, base_delay=settings.step_backoff_seconds
        ),
        verify_timeout=settings.verify_timeout_seconds,
        verify_initial_delay=settings.verify_initial_delay_seconds,
        guardrails=JobGuardrails(
            settings.allowed_sources,
            settings.allowed_destinations,
            {t.name: (t.sources, t.destinations) for t in settings.api_tokens},
        ),
    )


def worker_settings(settings: Settings) -> WorkerSettings:
    return WorkerSettings(
        max_jobs=settings.worker_max_jobs,
        lease_seconds=settings.lease_seconds,
        poll_interval=settings.poll_interval_seconds,
        max_job_attempts=settings.max_job_attempts,
        shutdown_grace=settings.shutdown_grace_seconds,
        skip_locked=not settings.is_sqlite,
    )
