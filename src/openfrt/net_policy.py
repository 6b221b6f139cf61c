"""Where openfrt may open connections: the allowed-networks rule (``OPENFRT_ALLOWED_NETWORKS``).

An administrator types a webhook URL or a broker host, and the server then connects to it and
reports what went wrong. Pointed at the server's own loopback services or a cloud metadata
address (169.254.169.254), that would let a careless or hostile entry probe the inside of the
network. So connections go only to addresses inside the listed networks (CIDRs separated by
commas or spaces); when the variable is unset, to any address but loopback, link-local,
multicast and unspecified ones. Loopback and link-local addresses are reached only through a
listed network inside those ranges (``127.0.0.0/8``, ``::1/128``, ``169.254.0.0/16``,
``fe80::/10``), so ``0.0.0.0/0`` does not open them.

Names are resolved and every address they resolve to must be allowed: checked when a
destination is configured and again before each connection.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

from openfrt.errors import OpenFRTError

ALLOWED_NETWORKS_ENV = "OPENFRT_ALLOWED_NETWORKS"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Where connections go when OPENFRT_ALLOWED_NETWORKS is unset (less the special ranges).
EVERYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))

#: Reachable only through a listed network inside one of them.
GUARDED = tuple(ipaddress.ip_network(cidr) for cidr in ("127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10"))


class NetworkNotAllowedError(OpenFRTError):
    """A URL or host resolves to an address outside the allowed networks."""


def allowed_networks() -> tuple[IPNetwork, ...]:
    """The networks ``OPENFRT_ALLOWED_NETWORKS`` lists, or everywhere when it is unset or blank."""
    configured = os.environ.get(ALLOWED_NETWORKS_ENV, "").replace(",", " ").split()
    if not configured:
        return EVERYWHERE
    try:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in configured)
    except ValueError as exc:
        raise NetworkNotAllowedError(f"{ALLOWED_NETWORKS_ENV} holds something that is not a network: {exc}") from None


def address_allowed(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether ``address`` is inside one of ``networks`` under the rule in the module docstring."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_multicast or address.is_unspecified:
        return False
    guarded = next((network for network in GUARDED if address in network), None)
    for network in networks:
        if address not in network:
            continue
        if guarded is None or (network.version == guarded.version and network.subnet_of(guarded)):  # type: ignore[arg-type]
            return True
    return False


def check_host_allowed(host: str, port: int | None = None) -> None:
    """Raise :class:`NetworkNotAllowedError` unless every address ``host`` resolves to is allowed."""
    networks = allowed_networks()
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise NetworkNotAllowedError(f"host {host!r} cannot be resolved: {exc}") from None
    addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    refused = sorted(str(address) for address in addresses if not address_allowed(address, networks))
    if refused:
        raise NetworkNotAllowedError(
            f"host {host!r} resolves to {', '.join(refused)}, outside the allowed networks "
            f"({ALLOWED_NETWORKS_ENV}; loopback and link-local only when listed)"
        )


def check_url_allowed(url: str) -> None:
    """Raise :class:`NetworkNotAllowedError` unless ``url`` is http(s) to an allowed host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NetworkNotAllowedError(f"{shown_url(url)!r} is not an http:// or https:// URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise NetworkNotAllowedError(f"{shown_url(url)!r} has an invalid port") from None
    check_host_allowed(parts.hostname, port)


def shown_url(url: str) -> str:
    """``url`` as it may be shown and logged: without ``user:password@`` and with its query
    string elided (webhook URLs often carry their token there)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{parts.path}{query}" if parts.scheme else url.partition("?")[0] + query
