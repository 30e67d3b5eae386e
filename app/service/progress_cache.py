"""Target counts of a job at one version: exact for as long as the version stands, because
every change to a job or its targets bumps it. Polling an unchanged job then reads one row."""

from __future__ import annotations

import threading
from collections import OrderedDict

from app.db.job_repository import Progress


class ProgressCache:
    def __init__(self, max_jobs: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[int, Progress]] = OrderedDict()
        self._max_jobs = max_jobs
        self._lock = threading.Lock()

    def get(self, job_id: str, version: int) -> Progress | None:
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(job_id)
            return Progress(entry[1])

    def put(self, job_id: str, version: int, progress: Progress) -> None:
        with self._lock:
            self._entries[job_id] = (version, Progress(progress))
            self._entries.move_to_end(job_id)
            while len(self._entries) > self._max_jobs:
                self._entries.popitem(last=False)
