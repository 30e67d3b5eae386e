"""The lock the executor takes around every read-modify-write of one KMS key policy."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class KeyLocks(Protocol):
    def hold(self, name: str) -> AbstractAsyncContextManager[None]: ...
