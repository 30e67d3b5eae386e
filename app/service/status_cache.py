"""Answers of `GET /v1/jobs/{id}` kept in memory, each served only while its version is known
to be the job's version in the database as of at most `max_age` seconds ago.

Dashboards poll a job many times a second while it changes a few times a second at most. One
query every `max_age / 3` seconds checks the versions of every remembered job at once
(`SELECT id, version … WHERE id IN …`), so a poll needs no database round trip of its own.
What a poller can see is therefore at most `max_age` behind the database; a change made
through this process (cancel, retry) forgets the job's answer at once, and a client whose
`If-None-Match` names a newer version than the remembered one is answered from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Versions of these jobs, as the database has them now (absent: no such job).
VersionReader = Callable[[Sequence[str]], Awaitable[Mapping[str, int]]]
# One job's answer read from the database: (version, body).
AnswerReader = Callable[[], Awaitable[tuple[int, bytes]]]


def etag_of(version: int) -> str:
    """A job's ETag: its version, quoted."""
    return f'"v{version}"'


@dataclass(slots=True)
class Snapshot:
    version: int
    body: bytes
    confirmed_at: float  # monotonic time at which `version` was last seen in the database
    used_at: float

    @property
    def etag(self) -> str:
        return etag_of(self.version)


class StatusCache:
    def __init__(
        self, max_age: float, *, max_jobs: int = 2_000, idle_seconds: float = 60.0
    ) -> None:
        self.max_age = max_age
        self._entries: OrderedDict[str, Snapshot] = OrderedDict()
        self._max_jobs = max_jobs
        self._idle_seconds = idle_seconds
        self._loading: dict[str, asyncio.Future[Snapshot]] = {}

    @property
    def enabled(self) -> bool:
        return self.max_age > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, job_id: str, now: float | None = None) -> Snapshot | None:
        """The job's answer, if its version was confirmed at most `max_age` ago."""
        entry = self._entries.get(job_id)
        now = time.monotonic() if now is None else now
        if entry is None or now - entry.confirmed_at > self.max_age:
            return None
        entry.used_at = now
        return entry

    def put(self, job_id: str, version: int, body: bytes, read_at: float) -> None:
        """Remember an answer built from a database read that started at `read_at`."""
        if not self.enabled:
            return
        current = self._entries.get(job_id)
        if current is not None and current.version > version:
            return  # a slower request read an older version: keep the newer one
        self._entries[job_id] = Snapshot(version, body, read_at, read_at)
        self._entries.move_to_end(job_id)
        while len(self._entries) > self._max_jobs:
            self._entries.popitem(last=False)

    def forget(self, job_id: str) -> None:
        self._entries.pop(job_id, None)

    async def load(self, job_id: str, read: AnswerReader) -> Snapshot:
        """Read the job's answer from the database and remember it. Requests that find the
        same job unremembered meanwhile wait for this one read instead of each making their
        own: when a busy job's answer expires, fifty pollers make one query, not fifty."""
        pending = self._loading.get(job_id)
        if pending is None:
            pending = asyncio.ensure_future(self._read(job_id, read))
            self._loading[job_id] = pending

            def done(future: asyncio.Future[Snapshot]) -> None:
                self._loading.pop(job_id, None)
                if not future.cancelled():
                    future.exception()  # seen, even if every waiter has gone (client hung up)

            pending.add_done_callback(done)
        return await asyncio.shield(pending)

    async def _read(self, job_id: str, read: AnswerReader) -> Snapshot:
        read_at = time.monotonic()
        version, body = await read()
        self.put(job_id, version, body, read_at)
        return Snapshot(version, body, read_at, read_at)

    async def refresh(self, read_versions: VersionReader) -> None:
        """Confirm every remembered answer whose version still stands; drop the others, and
        those nobody asked for lately."""
        started = time.monotonic()
        for job_id, entry in list(self._entries.items()):
            if started - entry.used_at > self._idle_seconds:
                self._entries.pop(job_id, None)
        if not self._entries:
            return
        versions = await read_versions(list(self._entries))
        for job_id, entry in list(self._entries.items()):
            if versions.get(job_id) == entry.version:
                entry.confirmed_at = max(entry.confirmed_at, started)
            elif entry.confirmed_at < started:
                # Changed (or gone) since: unless put() stored a newer read meanwhile, drop it.
                self._entries.pop(job_id, None)

    async def keep_fresh(self, read_versions: VersionReader, stop: asyncio.Event) -> None:
        """Refresh every `max_age / 3` seconds until `stop` (a late refresh still keeps the
        answers fresh); a failed refresh only lets the answers age out (the next GETs then
        read the database and say what is wrong)."""
        interval = self.max_age / 3
        while not stop.is_set():
            try:
                await self.refresh(read_versions)
            except Exception as error:  # the database is down: answers expire on their own
                log.debug("job status refresh failed", extra={"error": str(error)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
