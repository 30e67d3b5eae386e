"""Apply Alembic migrations (run by `amishare serve` at start and by `amishare migrate`).

The migrations are the checkout's top-level `migrations/` folder, installed as the package
`app.migrations` (pyproject.toml maps one to the other): a wheel carries them, and an editable
install finds them where they are.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_PACKAGE = "app.migrations"


def migrations_dir() -> Path:
    """The directory of the `app.migrations` package (Alembic needs a real directory)."""
    root = resources.files(MIGRATIONS_PACKAGE)
    if not isinstance(root, Path) or not (root / "env.py").is_file():
        raise FileNotFoundError(
            f"the migrations ({MIGRATIONS_PACKAGE}) are not a directory with env.py: {root}; "
            "install amishare from a wheel or with pip install -e (not from a zip)"
        )
    return root


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: call from a thread when an event loop is running. On PostgreSQL the upgrade
    holds an advisory lock (migrations/env.py), so that replicas starting at once take turns."""
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
