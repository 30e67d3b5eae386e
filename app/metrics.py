"""Prometheus metrics (docs/api.md, "Operations"): counters and histograms fed as work happens,
gauges read from the database when /metrics is scraped."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app.domain.types import JobStatus, TargetStatus

AWS_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LOOP_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per app, so that tests and several apps in one process never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._loop_lag_max = 0.0
        self.aws_calls = Counter(
            "amishare_aws_calls",
            "AWS API calls made, by API and outcome ('ok' or the AWS error code).",
            ["api", "outcome"],
            registry=self.registry,
        )
        self.aws_latency = Histogram(
            "amishare_aws_call_seconds",
            "Duration of AWS API calls, botocore retries included.",
            ["api"],
            buckets=AWS_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.jobs_created = Counter(
            "amishare_jobs_created", "Jobs accepted, by action.", ["action"], registry=self.registry
        )
        self.jobs_finished = Counter(
            "amishare_jobs_finished",
            "Jobs finished by this process's workers, by action and final status.",
            ["action", "status"],
            registry=self.registry,
        )
        self.jobs = Gauge(
            "amishare_jobs", "Jobs in the database, by status.", ["status"], registry=self.registry
        )
        self.targets = Gauge(
            "amishare_targets",
            "Targets in the database, by status.",
            ["status"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "amishare_queue_depth", "Jobs queued and not yet claimed.", registry=self.registry
        )
        self.worker_leases = Gauge(
            "amishare_worker_leases",
            "Jobs held by a worker under a lease that has not run out.",
            registry=self.registry,
        )

        self.loop_lag = Histogram(
            "amishare_event_loop_lag_seconds",
            "How late the process's event loop ran a timer: time it was held by other work.",
            buckets=LOOP_LAG_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag_max = Gauge(
            "amishare_event_loop_lag_max_seconds",
            "The longest the event loop has been held since the process started.",
            registry=self.registry,
        )

    def observe_loop_lag(self, seconds: float) -> None:
        self.loop_lag.observe(seconds)
        if seconds > self._loop_lag_max:
            self._loop_lag_max = seconds
            self.loop_lag_max.set(seconds)

    def observe_aws_call(self, api: str, outcome: str, seconds: float) -> None:
        self.aws_calls.labels(api=api, outcome=outcome).inc()
        self.aws_latency.labels(api=api).observe(seconds)

    def job_finished(self, action: str, status: str) -> None:
        self.jobs_finished.labels(action=action, status=status).inc()

    def set_counts(
        self,
        jobs: Mapping[str, int],
        targets: Mapping[str, int],
        live_leases: int,
    ) -> None:
        for status in JobStatus:
            self.jobs.labels(status=status.value).set(jobs.get(status.value, 0))
        for target_status in TargetStatus:
            self.targets.labels(status=target_status.value).set(targets.get(target_status.value, 0))
        self.queue_depth.set(jobs.get(JobStatus.QUEUED.value, 0))
        self.worker_leases.set(live_leases)

    def render(self) -> bytes:
        return generate_latest(self.registry)
