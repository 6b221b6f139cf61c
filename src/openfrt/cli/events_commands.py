"""``openfrt webhooks``, ``openfrt mqtt`` and ``openfrt events``: where events go, and the
deliveries that failed.

Thin wrappers over :class:`openfrt.integrations.destinations.DestinationService`. Secrets are
read from standard input (``--secret-stdin``, ``--password-stdin``), never from the command
line, where other users of the machine could read them; a webhook secret not given is made
and printed once. Every command acts as an administrator's API token (``OPENFRT_TOKEN``,
permission ``manage_integrations``), as the server's integration pages do. Heavy modules are imported inside the commands, so ``openfrt --help`` stays
quick.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from openfrt.cli.common import HomeOption, JsonOption, console, print_json, store_or_fail, usage_error
from openfrt.cli.identity import signed_in

if TYPE_CHECKING:
    from openfrt.integrations.destinations import DestinationInfo

webhooks_app = typer.Typer(help="Webhooks: each event POSTed as signed JSON to a URL.", no_args_is_help=True)
mqtt_app = typer.Typer(help="The MQTT broker events are published to.", no_args_is_help=True)
events_app = typer.Typer(help="Deliveries of events that have not gone out: dead letters and retries.", no_args_is_help=True)

EventsOption = Annotated[
    list[str],
    typer.Option("--events", help="Event types to send, comma-separated or repeated (default: all): alert.raised, alert.adjudicated, "
                                  "alert.held, alert.released, deployment.started, deployment.start_failed, deployment.ended, deployment.camera_gap."),
]
MediaOption = Annotated[
    bool, typer.Option("--include-media/--no-media", help="Add an alert's images to alert.raised (biometric data leaves openfrt; audited).")
]


def _read_stdin(what: str) -> str:
    value = sys.stdin.read().rstrip("\r\n")
    if not value:
        usage_error(f"standard input held no {what}")
    return value


@webhooks_app.command("add")
def webhook_add(
    name: Annotated[str, typer.Argument(help="What the receiver is, e.g. control-room.")],
    url: Annotated[str, typer.Argument(help="http(s) URL inside the allowed networks (OPENFRT_ALLOWED_NETWORKS).")],
    events: EventsOption = [],  # noqa: B006 - Typer reads the default, never mutates it
    secret_stdin: Annotated[bool, typer.Option("--secret-stdin", help="Read the signing secret from standard input (else one is made and printed once).")] = False,
    include_media: MediaOption = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add a webhook; each delivery carries X-OpenFRT-Signature: sha256=<HMAC of the body>."""
    from openfrt.integrations.destinations import DestinationService, new_secret

    secret = _read_stdin("secret") if secret_stdin else new_secret()
    with store_or_fail(home, json_output, webhook=name) as store:
        actor = signed_in(store, "manage_integrations")
        info = DestinationService(store).add_webhook(name, url, secret=secret, events=events, include_media=include_media,
                                                     actor=actor)
    shown: dict[str, Any] = {} if secret_stdin else {"secret": secret}
    if json_output:
        print_json({**info.as_dict(), **shown})
        return
    _print_destination(info)
    if not secret_stdin:
        console.print("Signing secret (give it to the receiver now; it is not shown again):")
        typer.echo(secret)


@webhooks_app.command("list")
def webhook_list(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Webhooks and the broker, with what waits for each (never their secrets)."""
    from openfrt.integrations.destinations import DestinationService

    with store_or_fail(home, json_output) as store:
        signed_in(store, "manage_integrations")
        destinations = DestinationService(store).list()
    for info in destinations:
        if json_output:
            print_json(info.as_dict())
        else:
            _print_destination(info)


@webhooks_app.command("remove")
def webhook_remove(
    name: Annotated[str, typer.Argument(help="The webhook's name.")],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Remove a webhook; events waiting for it are dropped (audited)."""
    _remove(name, home, json_output)


@webhooks_app.command("media")
def webhook_media(
    name: Annotated[str, typer.Argument(help="The webhook's name (or mqtt, for the broker).")],
    include_media: Annotated[bool, typer.Option("--on/--off", help="Send alert images to it, or stop.")],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Start or stop sending an alert's images with alert.raised (audited)."""
    from openfrt.integrations.destinations import DestinationService

    with store_or_fail(home, json_output, destination=name) as store:
        actor = signed_in(store, "manage_integrations")
        info = DestinationService(store).set_include_media(name, include_media, actor=actor)
    if json_output:
        print_json(info.as_dict())
    else:
        _print_destination(info)


@mqtt_app.command("set")
def mqtt_set(
    host: Annotated[str, typer.Option("--host", help="Broker host (inside the allowed networks).")],
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Broker port.")] = 1883,
    tls: Annotated[bool, typer.Option("--tls", help="Connect over TLS (the system's CAs unless --ca-file).")] = False,
    ca_file: Annotated[Optional[Path], typer.Option("--ca-file", help="CA certificate(s) to trust for the broker (implies --tls).")] = None,
    username: Annotated[Optional[str], typer.Option("--username", help="User name at the broker.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the broker password from standard input.")] = False,
    topic_prefix: Annotated[str, typer.Option("--topic-prefix", help="Topics are <prefix>/<deployment>/<event>.")] = "openfrt",
    events: EventsOption = [],  # noqa: B006 - Typer reads the default, never mutates it
    include_media: MediaOption = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Publish events to this broker with QoS 1 (replacing any broker set before)."""
    from openfrt.integrations.destinations import DestinationService

    password = _read_stdin("password") if password_stdin else None
    with store_or_fail(home, json_output, mqtt=host) as store:
        actor = signed_in(store, "manage_integrations")
        info = DestinationService(store).set_mqtt(
            host=host, port=port, tls=tls, ca_file=ca_file, username=username, password=password, topic_prefix=topic_prefix,
            events=events, include_media=include_media, actor=actor,
        )
    if json_output:
        print_json(info.as_dict())
    else:
        _print_destination(info)


@mqtt_app.command("show")
def mqtt_show(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """The broker events go to (never its password)."""
    from openfrt.integrations.destinations import MQTT_NAME, DestinationService

    with store_or_fail(home, json_output) as store:
        signed_in(store, "manage_integrations")
        info = DestinationService(store).get(MQTT_NAME)
    if json_output:
        print_json(info.as_dict())
    else:
        _print_destination(info)


@mqtt_app.command("remove")
def mqtt_remove(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Stop publishing to the broker; events waiting for it are dropped (audited)."""
    from openfrt.integrations.destinations import MQTT_NAME

    _remove(MQTT_NAME, home, json_output)


@events_app.command("deliveries")
def event_deliveries(
    pending: Annotated[bool, typer.Option("--pending", help="Deliveries still being retried, instead of dead-lettered ones.")] = False,
    destination: Annotated[Optional[str], typer.Option("--destination", help="Only this webhook (or mqtt).")] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Dead-lettered deliveries (or, with --pending, those being retried), oldest first."""
    from openfrt.integrations.destinations import DestinationService
    from openfrt.records.models import DeliveryStatus

    status = DeliveryStatus.pending if pending else DeliveryStatus.dead
    with store_or_fail(home, json_output) as store:
        signed_in(store, "manage_integrations")
        deliveries = DestinationService(store).deliveries(status, destination, limit=1000)
    for delivery in deliveries:
        if json_output:
            print_json(delivery.as_dict())
        else:
            console.print(f"{delivery.id} {delivery.destination} {delivery.event_type} ({delivery.deployment or '—'}, "
                          f"{delivery.occurred_at.isoformat()}): {delivery.attempts} attempts; {delivery.last_error or ''}", markup=False)


@events_app.command("retry")
def event_retry(
    deliveries: Annotated[Optional[list[int]], typer.Argument(metavar="[DELIVERY]...", help="Dead-lettered delivery numbers.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead-lettered delivery.")] = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Queue dead-lettered deliveries again, for a new retry window (audited)."""
    from openfrt.integrations.destinations import DestinationService

    with store_or_fail(home, json_output) as store:
        actor = signed_in(store, "manage_integrations")
        retried = DestinationService(store).retry(deliveries or [], all_dead=all_dead, actor=actor)
    if json_output:
        print_json({"retried": retried})
    else:
        console.print(f"{retried} deliveries queued again")


def _remove(name: str, home: Path | None, json_output: bool) -> None:
    from openfrt.integrations.destinations import DestinationService

    with store_or_fail(home, json_output, destination=name) as store:
        actor = signed_in(store, "manage_integrations")
        DestinationService(store).remove(name, actor=actor)
    if json_output:
        print_json({"destination": name, "removed": True})
    else:
        console.print(f"{name} removed; events waiting for it were dropped")


def _print_destination(info: DestinationInfo) -> None:
    where = info.url if info.kind.value == "webhook" else (
        f"{info.settings['host']}:{info.settings['port']}{' (TLS)' if info.settings['tls'] else ''}, topic {info.settings['topic_prefix']}/…")
    media = "; sends alert images" if info.include_media else ""
    console.print(f"{info.name} ({info.kind.value}) → {where}; events: {', '.join(info.events) or 'all'}{media}; "
                  f"waiting {info.pending}, dead-lettered {info.dead}", markup=False)
