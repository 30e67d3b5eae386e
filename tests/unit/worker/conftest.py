from __future__ import annotations

import pytest

from tests.unit.fakes import Worker


@pytest.fixture
def worker() -> Worker:
    return Worker()
