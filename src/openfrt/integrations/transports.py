"""How one delivery reaches its destination: an HTTP POST to a webhook, or an MQTT publish.

A transport sends one :class:`Outgoing` message or raises :class:`DeliveryError` with a short
reason that is safe to store and show (never a response body or a secret). The dispatcher
decides about retries; transports only try once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from openfrt import __version__
from openfrt.net_policy import WEBHOOK_SCHEMES, DestinationRefused, NetworkPolicy, shown_url

log = logging.getLogger(__name__)

# httpx logs every request's URL at INFO, and a webhook's URL may carry its token.
logging.getLogger("httpx").setLevel(logging.WARNING)

SIGNATURE_HEADER = "X-OpenFRT-Signature"
DELIVERY_HEADER = "X-OpenFRT-Delivery"
EVENT_HEADER = "X-OpenFRT-Event"


class DeliveryError(Exception):
    """One attempt failed; the message is stored with the delivery and shown to administrators."""


@dataclass(frozen=True)
class Outgoing:
    delivery_id: str
    event_type: str
    deployment: str | None
    body: bytes


class Transport(Protocol):
    kind: str

    def send(self, message: Outgoing) -> None:
        """Deliver ``message`` once, or raise :class:`DeliveryError`."""

    def close(self) -> None: ...


def signature(secret: str, body: bytes) -> str:
    """The ``X-OpenFRT-Signature`` value: HMAC-SHA256 of the exact body bytes with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookTransport:
    """POSTs the event's JSON, signed, to the webhook's URL; any 2xx answer is a delivery.

    Redirects are not followed (they would lead outside the allowed networks unchecked), and
    the URL's host is checked against them before every attempt, as DNS answers change.
    """

    kind = "webhook"

    def __init__(self, url: str, secret: str, client: httpx.Client) -> None:
        self.url, self._secret, self._client = url, secret, client

    def send(self, message: Outgoing) -> None:
        try:
            NetworkPolicy.from_env().check_url(self.url, WEBHOOK_SCHEMES, shown_url(self.url))
        except DestinationRefused as exc:
            raise DeliveryError(str(exc)) from None
        headers = {
            "Content-Type": "application/json", "User-Agent": f"openfrt/{__version__}",
            EVENT_HEADER: message.event_type, DELIVERY_HEADER: message.delivery_id,
            SIGNATURE_HEADER: signature(self._secret, message.body),
        }
        try:
            response = self._client.post(self.url, content=message.body, headers=headers)
        except httpx.TimeoutException:
            raise DeliveryError(f"{shown_url(self.url)} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{shown_url(self.url)}: {type(exc).__name__}: {_first_line(exc)}") from None
        if not response.is_success:
            raise DeliveryError(f"{shown_url(self.url)} answered HTTP {response.status_code}")

    def close(self) -> None:
        """The HTTP client is the dispatcher's, shared by every webhook."""


class MqttTransport:
    """Publishes to ``<prefix>/<deployment>/<event type>`` with QoS 1 over one connection that
    paho keeps open and re-opens (with back-off) when it drops.

    A delivery counts once the broker acknowledges it (PUBACK). A message handed to paho is
    never handed over again while this transport lives: if the acknowledgement is late, the
    next attempt waits for that message instead of publishing a second copy. QoS 1 is still
    "at least once" across restarts, so subscribers de-duplicate on the event's ``delivery``.
    """

    kind = "mqtt"

    def __init__(self, settings: dict[str, Any], password: str | None, timeout: float) -> None:
        self.host, self.port = settings["host"], int(settings["port"])
        self.prefix = settings["topic_prefix"]
        self._timeout = timeout
        self._connected = threading.Event()
        self._acknowledged: set[int] = set()
        self._condition = threading.Condition()
        self._sent: dict[str, int] = {}
        self._refusal: str | None = None
        self._closing = False
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"openfrt-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}",
            clean_session=True, protocol=mqtt.MQTTv311,
        )
        if settings.get("username"):
            self._client.username_pw_set(settings["username"], password)
        if settings.get("tls"):
            self._client.tls_set(ca_certs=settings.get("ca_file") or None)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.reconnect_delay_set(1, 30)
        self._started = False

    def topic(self, message: Outgoing) -> str:
        return f"{self.prefix}/{topic_level(message.deployment or '-')}/{message.event_type}"

    def send(self, message: Outgoing) -> None:
        mid = self._sent.get(message.delivery_id)
        if mid is None:
            mid = self._publish(message)
        with self._condition:
            acknowledged = self._condition.wait_for(lambda: mid in self._acknowledged, self._timeout)
            if not acknowledged:
                raise DeliveryError(f"broker {self.host}:{self.port} did not acknowledge within {self._timeout:g} s")
            self._acknowledged.discard(mid)
        del self._sent[message.delivery_id]

    def _publish(self, message: Outgoing) -> int:
        self._connect()
        if not self._connected.wait(self._timeout):
            reason = f": {self._refusal}" if self._refusal else ""
            raise DeliveryError(f"not connected to the broker {self.host}:{self.port}{reason}")
        info = self._client.publish(self.topic(message), message.body, qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):  # NO_CONN: queued for the reconnection
            raise DeliveryError(f"the broker {self.host}:{self.port} was not sent the message: {mqtt.error_string(info.rc)}")
        self._sent[message.delivery_id] = info.mid
        return info.mid

    def _connect(self) -> None:
        """Start connecting (once); the host is checked against the allowed networks first."""
        if self._started:
            return
        try:
            NetworkPolicy.from_env().check_host(self.host, self.port)
        except DestinationRefused as exc:
            raise DeliveryError(str(exc)) from None
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self._started = True

    def close(self) -> None:
        if self._started:
            self._closing = True
            self._client.disconnect()
            self._client.loop_stop()

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            self._refusal = str(reason)
            log.warning("MQTT broker %s:%s refused the connection: %s", self.host, self.port, reason)
            return
        self._refusal = None
        self._connected.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if self._connected.is_set() and not self._closing:
            log.warning("MQTT broker %s:%s disconnected (%s); reconnecting", self.host, self.port, reason)
        self._connected.clear()

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, _reason: Any, _properties: Any) -> None:
        with self._condition:
            self._acknowledged.add(mid)
            self._condition.notify_all()


def topic_level(name: str) -> str:
    """``name`` as one MQTT topic level: ``/``, ``+`` and ``#`` become ``_`` (the payload has it exactly)."""
    return re.sub(r"[/+#]", "_", name)


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0][:200]
