"""Where a request comes from: the direct peer, or the client a trusted proxy forwarded.

``X-Forwarded-For`` is believed only when the direct peer is one of the
configured trusted proxies (``trusted_proxies`` in ``corridor.yaml``, e.g. the
ingress controller's pod network); the client is then the right-most address
that is not itself a trusted proxy. Anyone else's forwarding header is ignored,
so a caller cannot choose the address it is throttled or reported under.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDR blocks or single addresses, e.g. ``["10.0.0.0/8", "127.0.0.1"]``; a bad one raises
    ValueError naming it."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"trusted proxy: got {value!r}, want an address or CIDR block, "
                             f"e.g. 10.0.0.0/8") from exc
    return tuple(networks)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


class ClientAddresses:
    """Resolves the client address of a request (see the module docstring)."""

    def __init__(self, trusted_proxies: Sequence[Network] = ()) -> None:
        self.trusted = tuple(trusted_proxies)

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.trusted)

    def resolve(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> str | None:
        """The client: ``peer`` itself unless it is a trusted proxy that forwarded a valid address.

        >>> ClientAddresses(parse_networks(["10.0.0.0/8"])).resolve("10.1.2.3", ["203.0.113.9, 10.4.4.4"])
        '203.0.113.9'
        >>> ClientAddresses().resolve("198.51.100.7", ["203.0.113.9"])
        '198.51.100.7'
        """
        if peer is None:
            return None
        direct = _address(peer)
        if direct is None or not self.trusted or not self._is_trusted(direct):
            return peer
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                return peer  # a malformed chain: believe only what we saw
            if not self._is_trusted(address):
                return str(address)
        return peer
