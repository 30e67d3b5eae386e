"""The `amishare` command: serve, worker, migrate."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from app.config import Settings
from app.logs import configure_logging

cli = typer.Typer(
    help="Share and revoke KMS-encrypted AMIs across AWS accounts.", no_args_is_help=True
)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
) -> None:
    """Apply migrations, then serve the API (with the embedded worker unless disabled)."""
    import uvicorn

    from app.db.migrate import upgrade
    from app.main import create_app

    settings = _settings()
    upgrade(settings.database_url)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


@cli.command()
def worker() -> None:
    """Run a worker alone (no HTTP); any number of them against one PostgreSQL database."""
    from app.worker.process import run_worker

    settings = _settings()
    asyncio.run(run_worker(settings, install_signal_handlers=True))


@cli.command()
def migrate() -> None:
    """Apply database migrations up to the newest."""
    from app.db.migrate import upgrade

    upgrade(_settings().database_url)
    typer.echo("database is up to date")


def main() -> None:
    cli()
