"""Which database errors mean "the database is unavailable" (try again later), for the API and
the worker alike. Anything else from the database (an IntegrityError, a bad statement) is a
bug: it is reported as one, never answered with "try again"."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# OSError: what asyncpg raises, unwrapped, when it cannot reach the server at all (refused,
# reset, unreachable host or network, and TimeoutError when the server does not answer).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    OSError,
)


def database_unavailable(error: BaseException) -> bool:
    """A connection-level failure: the server is down, unreachable, too slow or restarting."""
    if isinstance(error, CONNECTION_ERRORS):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)
