"""Which hosts the server may connect to because a user named them (camera streams, webhooks,
the MQTT broker).

A URL typed by a user is a request the server makes on their behalf: without a rule, a camera
set to ``http://127.0.0.1:…/internal?secret=1`` has the server fetch its own internal services
every few seconds. So a URL is allowed only when its scheme is one the caller expects and
*every* address its host resolves to lies in a network an administrator allowed
(``OPENFRT_ALLOWED_NETWORKS``, comma-separated CIDR ranges; none by default). The server's own
addresses — loopback, link-local (cloud metadata services live there), unspecified — and
multicast are allowed only by a range listed for them, never by a wider one such as
``0.0.0.0/0``. IPv4 addresses written as IPv6 (``::ffff:127.0.0.1``) count as the IPv4 address.

Callers check when a URL is accepted and again just before each connection, so that a host
name resolving elsewhere later is caught; what a connection then does by itself (an HTTP
redirect followed by FFmpeg) is outside this check — hence network egress rules as well.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from openfrt.records.errors import InvalidRecordError

ALLOWED_NETWORKS_ENV = "OPENFRT_ALLOWED_NETWORKS"

#: Loopback, "this host", link-local and multicast ranges: the server itself and its link.
HOST_ONLY: tuple[Network, ...] = tuple(ipaddress.ip_network(text) for text in (
    "127.0.0.0/8", "0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "::1/128", "::/128", "fe80::/10", "ff00::/8",
))

#: What a webhook may be.
WEBHOOK_SCHEMES = frozenset({"http", "https"})
#: A URL: a scheme, then ``//`` and an authority.
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: Names of URL parameters that carry credentials (cameras take ``user``/``password``,
#: ``token``, ``key``, ``auth`` … in the query, some in the path); matched anywhere in the name.
CREDENTIAL_NAME = re.compile(r"user|usr|login|pass|pwd|token|auth|key|secret|sig|cred|session|sid", re.IGNORECASE)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Host name and port to the addresses they resolve to.
Resolver = Callable[[str, int | None], list[str]]


class DestinationRefused(InvalidRecordError):
    """A URL names a scheme or a host the server may not connect to."""


def without_credentials(source: str) -> str:
    """``source`` as it may be shown, logged, audited and published: a URL loses its
    ``user:password@`` part, every ``name=value`` pair whose name looks like a credential (in
    the query, or in a path segment as some cameras take them) and its fragment. Anything that
    is not a URL is returned as it is."""
    if not URL.match(source):
        return source
    parts = urlsplit(source)
    path = "/".join(_without_credential_pairs(segment) for segment in parts.path.split("/"))
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], path, _without_credential_pairs(parts.query), ""))


def shown_url(url: str) -> str:
    """``url`` as a webhook may be shown and logged: without ``user:password@`` and with its
    whole query string elided (webhook URLs often carry their token there, under any name)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{parts.path}{query}" if parts.scheme else url.partition("?")[0] + query


def _without_credential_pairs(text: str) -> str:
    if "=" not in text:
        return text
    return "&".join(pair for pair in text.split("&") if pair and not CREDENTIAL_NAME.search(unquote(pair.partition("=")[0])))


def resolve(host: str, port: int | None) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, as a connection would use)."""
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


@dataclass(frozen=True)
class NetworkPolicy:
    networks: tuple[Network, ...] = ()
    resolver: Resolver = resolve

    @classmethod
    def from_env(cls) -> NetworkPolicy:
        """The networks listed in ``OPENFRT_ALLOWED_NETWORKS`` (a malformed range is an error)."""
        return cls.from_networks(os.environ.get(ALLOWED_NETWORKS_ENV, ""))

    @classmethod
    def from_networks(cls, text: str) -> NetworkPolicy:
        """The networks in ``text``: comma-separated CIDR ranges."""
        return cls(parse_networks(text))

    def check_url(self, url: str, schemes: Collection[str], shown: str | None = None) -> None:
        """Refuse ``url`` unless its scheme is one of ``schemes`` and every address of its host
        is allowed (:class:`DestinationRefused` says why, naming the URL as ``shown``: by default
        without its credentials)."""
        shown, parts = shown or without_credentials(url), urlsplit(url)
        if parts.scheme.lower() not in schemes:
            raise DestinationRefused(f"{shown}: only {', '.join(s + '://' for s in sorted(schemes))} URLs are accepted")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise DestinationRefused(f"{shown}: the port is not a number from 0 to 65535") from None
        if not host:
            raise DestinationRefused(f"{shown}: the URL names no host")
        self.check_host(host, port, shown)

    def check_host(self, host: str, port: int | None, shown: str | None = None) -> None:
        """Refuse ``host`` unless every address it resolves to is allowed (e.g. a broker's host);
        ``shown`` names the destination in the refusal (default ``host:port``)."""
        shown = shown or (f"{host}:{port}" if port is not None else host)
        try:
            addresses = [ipaddress.ip_address(host)] if _is_literal(host) else [ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(host, port)]
        except (OSError, UnicodeError, ValueError) as exc:
            raise DestinationRefused(f"{shown}: the host {host!r} cannot be resolved ({exc})") from None
        if not addresses:
            raise DestinationRefused(f"{shown}: the host {host!r} resolves to no address")
        for address in addresses:
            self.check_address(address, shown)

    def check_address(self, address: Address, shown: str) -> None:
        address = _unmapped(address)
        if not self.networks:
            raise DestinationRefused(
                f"{shown}: no network is allowed for cameras and other connections; an administrator lists the "
                f"allowed ones as CIDR ranges in {ALLOWED_NETWORKS_ENV} (e.g. 10.20.0.0/16)"
            )
        special = _host_only(address)
        if not any(address in network and (not special or _host_only_network(network)) for network in self.networks):
            kind = " (one of the server's own or a multicast address, allowed only by a range listed for it)" if special else ""
            raise DestinationRefused(f"{shown}: address {address}{kind} is outside the networks allowed in {ALLOWED_NETWORKS_ENV}")


def parse_networks(text: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise InvalidRecordError(f"{ALLOWED_NETWORKS_ENV}: {exc} (give comma-separated CIDR ranges, e.g. 10.20.0.0/16,192.168.5.0/24)") from None


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _host_only(address: Address) -> bool:
    """Addresses that reach this machine or its link rather than a camera network."""
    return any(address in network for network in HOST_ONLY if network.version == address.version)


def _host_only_network(network: Network) -> bool:
    return any(network.subnet_of(special) for special in HOST_ONLY if special.version == network.version)  # type: ignore[arg-type]
