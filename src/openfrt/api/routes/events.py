"""Events out, for administrators: webhooks, the MQTT broker, and deliveries that failed.

Secrets are accepted here and never returned, except a webhook secret the server generated,
which is shown once in the answer that created it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from openfrt.api.context import ServerContext
from openfrt.api.permissions import Permission
from openfrt.api.security import Principal, context, require
from openfrt.integrations.destinations import MQTT_NAME, new_secret
from openfrt.integrations.events import EventType
from openfrt.records.models import DeliveryStatus

router = APIRouter(prefix="/api/events", tags=["events"])
admin = require(Permission.manage_integrations)

EVENTS_FIELD = Field(default_factory=list, description="Event types to send; empty: all of them.")
MEDIA_FIELD = Field(False, description="Add an alert's images (base64 JPEG) to alert.raised. Biometric data: audited.")


class NewWebhook(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    url: str = Field(min_length=1, description="http(s) URL inside the allowed networks (OPENFRT_ALLOWED_NETWORKS).")
    secret: str | None = Field(None, description="Signing secret (16 characters or more); omit to have one generated and shown once.")
    events: list[EventType] = EVENTS_FIELD
    include_media: bool = MEDIA_FIELD


class Broker(BaseModel):
    host: str = Field(min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    tls: bool = False
    ca_file: str | None = Field(None, description="CA certificate file on the server (default with TLS: the system's).")
    username: str | None = None
    password: str | None = None
    topic_prefix: str = "openfrt"
    events: list[EventType] = EVENTS_FIELD
    include_media: bool = MEDIA_FIELD


class MediaChoice(BaseModel):
    include_media: bool


class Retry(BaseModel):
    deliveries: list[int] = Field(default_factory=list, description="Dead-lettered delivery numbers; empty with all_dead.")
    all_dead: bool = False


@router.get("/destinations", summary="Webhooks and the MQTT broker, with their queues (never their secrets)")
def destinations(_: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> list[dict[str, Any]]:
    return [info.as_dict() for info in ctx.destinations.list()]


@router.post("/webhooks", status_code=201, summary="Add a webhook: each event is POSTed to it, signed (X-OpenFRT-Signature)")
def add_webhook(body: NewWebhook, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    secret = body.secret or new_secret()
    info = ctx.destinations.add_webhook(body.name, body.url, secret=secret, events=[event.value for event in body.events],
                                        include_media=body.include_media, actor=principal.name)
    return {**info.as_dict(), **({} if body.secret else {"secret": secret})}


@router.put("/mqtt", summary="Send events to this MQTT broker (replacing any other), topic <prefix>/<deployment>/<event>")
def set_mqtt(body: Broker, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.destinations.set_mqtt(
        host=body.host, port=body.port, tls=body.tls, ca_file=Path(body.ca_file) if body.ca_file else None,
        username=body.username, password=body.password, topic_prefix=body.topic_prefix,
        events=[event.value for event in body.events], include_media=body.include_media, actor=principal.name,
    ).as_dict()


@router.patch("/destinations/{name}", summary="Turn sending alert images to a destination on or off (audited)")
def set_media(name: str, body: MediaChoice, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    return ctx.destinations.set_include_media(name, body.include_media, actor=principal.name).as_dict()


@router.delete("/destinations/{name}", summary=f"Remove a webhook (or the broker, named {MQTT_NAME!r}); its queue is dropped")
def remove(name: str, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, str]:
    ctx.destinations.remove(name, actor=principal.name)
    return {"status": "removed"}


@router.get("/deliveries", summary="Deliveries not made yet: dead-lettered (default) or pending retries")
def deliveries(
    status: DeliveryStatus = DeliveryStatus.dead,
    destination: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Depends(admin),
    ctx: ServerContext = Depends(context),
) -> list[dict[str, Any]]:
    return [delivery.as_dict() for delivery in ctx.destinations.deliveries(status, destination, limit)]


@router.post("/deliveries/retry", summary="Queue dead-lettered deliveries again, for a new retry window (audited)")
def retry(body: Retry, principal: Principal = Depends(admin), ctx: ServerContext = Depends(context)) -> dict[str, int]:
    return {"retried": ctx.destinations.retry(body.deliveries, all_dead=body.all_dead, actor=principal.name)}
