"""The progress cache answers only for the version it was filled at."""

from __future__ import annotations

from app.db.job_repository import Progress
from app.domain.types import TargetStatus
from app.service.progress_cache import ProgressCache


def counts(succeeded: int) -> Progress:
    progress: Progress = Progress()
    progress[TargetStatus.SUCCEEDED] = succeeded
    return progress


def test_a_new_version_is_never_answered_from_the_cache() -> None:
    cache = ProgressCache()
    cache.put("job-1", 3, counts(5))
    assert cache.get("job-1", 3) == counts(5)
    assert cache.get("job-1", 4) is None
    assert cache.get("job-2", 3) is None


def test_the_cache_is_bounded_and_keeps_the_most_recently_used() -> None:
    cache = ProgressCache(max_jobs=2)
    cache.put("a", 1, counts(1))
    cache.put("b", 1, counts(2))
    assert cache.get("a", 1) is not None
    cache.put("c", 1, counts(3))
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) == counts(1)
    assert cache.get("c", 1) == counts(3)


def test_callers_cannot_change_what_is_cached() -> None:
    cache = ProgressCache()
    progress = counts(1)
    cache.put("a", 1, progress)
    progress[TargetStatus.SUCCEEDED] = 99
    answer = cache.get("a", 1)
    assert answer == counts(1)
    assert answer is not None
    answer[TargetStatus.FAILED] = 1
    assert cache.get("a", 1) == counts(1)
