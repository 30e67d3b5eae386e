"""The migration scripts (Alembic reads them as files and skips this one)."""
