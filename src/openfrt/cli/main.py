"""Entry point of the ``openfrt`` console script."""

from __future__ import annotations

import typer

from openfrt import __version__
from openfrt.cli import (
    audit_commands,
    backup_commands,
    engine_commands,
    evaluate_command,
    events_commands,
    footage_command,
    gallery_commands,
    keys_commands,
    live_command,
    live_records_commands,
    models_commands,
    recovery_command,
    serve_command,
    users_commands,
    walkthrough_command,
)

app = typer.Typer(
    name="openfrt",
    help="Accountable facial recognition: detect, compare and search faces with safeguards built in.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(engine_commands.faces)
app.command()(engine_commands.compare)
app.add_typer(models_commands.app, name="models")
app.add_typer(gallery_commands.subject_app, name="subject")
app.add_typer(gallery_commands.watchlist_app, name="watchlist")
app.command("enrol-folder")(gallery_commands.enrol_folder)
app.command()(gallery_commands.identify)
app.command()(gallery_commands.search)
app.command("search-footage")(footage_command.search_footage)
app.command()(evaluate_command.evaluate)
app.command()(live_command.live)
app.command("walkthrough")(walkthrough_command.walkthrough)
live_records_commands.deployments_app.command("recover")(recovery_command.recover)
app.add_typer(live_records_commands.deployments_app, name="deployments")
app.add_typer(live_records_commands.alerts_app, name="alerts")
app.add_typer(live_records_commands.retention_app, name="retention")
app.command()(users_commands.login)
app.add_typer(users_commands.users_app, name="users")
app.add_typer(audit_commands.audit_app, name="audit")
app.add_typer(keys_commands.keys_app, name="keys")
app.command()(backup_commands.backup)
app.command()(backup_commands.restore)
app.command()(serve_command.serve)
app.add_typer(events_commands.webhooks_app, name="webhooks")
app.add_typer(events_commands.mqtt_app, name="mqtt")
app.add_typer(events_commands.events_app, name="events")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"openfrt {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """openfrt command line."""
