"""The `amishare` command: serve, worker, migrate, sandbox, and the HTTP client commands."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from app.client.commands import register as register_client_commands
from app.config import Settings
from app.logs import configure_logging

cli = typer.Typer(
    help="Share and revoke KMS-encrypted AMIs across AWS accounts.", no_args_is_help=True
)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


NO_TOKENS_WARNING = "no API tokens are set (AMISHARE_API_TOKENS): every /v1 call will answer 401"


def no_tokens_hint() -> str:
    """What `serve` prints when no token is configured: how to set one (it makes none up)."""
    example = (
        '[{"name":"me","token":"<16+ random characters>","scopes":["jobs:read","jobs:write"]}]'
    )
    return "\n".join(
        [
            f"warning: {NO_TOKENS_WARNING}.",
            "To call the API, start it again with a token (amishare serve, or make run):",
            f"  export AMISHARE_API_TOKENS='{example}'",
            "  make a token with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
            '  ("sha256": "<its hex digest>" in place of "token" keeps the token out of the',
            "  service's settings)",
            "then call it with: AMISHARE_TOKEN=<the token> amishare jobs",
        ]
    )


def warn_if_no_tokens(settings: Settings) -> None:
    """Once, on stderr, before serving: a service without tokens says why it answers 401.
    With JSON logs it is one log event, so that the stream stays one JSON object per line."""
    if settings.api_tokens:
        return
    if settings.log_format == "json":
        logging.getLogger("app.cli").warning(
            "%s; set it to a JSON list of tokens (see README: Settings)", NO_TOKENS_WARNING
        )
    else:
        typer.echo(no_tokens_hint(), err=True)


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
    app = create_app(settings, serving=True)
    warn_if_no_tokens(settings)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


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


@cli.command()
def sandbox(
    port: Annotated[
        int, typer.Option(help="Port for the API on 127.0.0.1 (0: any free one)")
    ] = 8080,
    log_level: Annotated[str, typer.Option(help="Log level of the service")] = "WARNING",
) -> None:
    """Run the service against a local AWS double with demo AMIs: try amishare safely."""
    from rich.console import Console
    from rich.markup import escape

    from app.sandbox.run import SandboxError, print_banner, run_sandbox

    configure_logging(log_level)
    console = Console(highlight=False)
    console.print("Starting the sandbox (AWS double, demo AMIs, service)…")
    try:
        run_sandbox(port, ready=lambda info: print_banner(info, console))
    except SandboxError as error:
        console.print(f"[bold red]error:[/bold red] {escape(str(error))}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass  # interrupted while starting: everything started has been stopped
    console.print("Sandbox stopped.")


register_client_commands(cli)


def main() -> None:
    cli()
