"""The corridor's sites as one installation sees them: this site, its peer, and ``sites.json``.

``$CORRIDOR_HOME/sites.json`` maps ``"FR"``/``"DE"`` to ``{"url": <gateway base URL>,
"home": <that site's state folder>, "peer_url": <its peer API>}``; ``corridor up``
writes it for the embedded corridor, and the CLI (``corridor crisis --as DE``) reads
it to find a site's gateway.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.bundle import JURISDICTIONS

SITES_FILENAME = "sites.json"


def other_site(site: str) -> str:
    """The peer of ``site`` in a two-site corridor.

    >>> other_site("FR")
    'DE'
    """
    return next(j for j in JURISDICTIONS if j != site)


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """How this site reaches and admits its peer.

    ``peer_url`` is the peer's peer API (``https://host:port``); ``peer_ca`` the peer
    site's CA certificate (PEM file); ``identity_dir`` holds this site's own CA,
    certificate and key; ``listen_port`` is this site's own peer API port.
    """

    site: str
    peer_url: str
    peer_ca: Path
    identity_dir: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 8100
    peer_gateway_url: str | None = None  # named in "present this key at the other site" errors
    witness_period_s: float = 5.0
    #: A peer head one entry past the last witnessed one (usually the peer's own ``witness`` entry
    #: about this site) is cosigned but recorded in this ledger at most this often; a larger step
    #: is recorded at once. Without it each site's record grew the other's log, every cycle, forever.
    witness_record_s: float = 60.0

    def __post_init__(self) -> None:
        if self.site not in JURISDICTIONS:
            raise ValueError(f"site: got {self.site!r}, want FR or DE")
        if not self.peer_url.startswith("https://"):
            raise ValueError(f"peer_url: got {self.peer_url!r}, want https://HOST:PORT (mutual TLS), "
                             f"e.g. https://127.0.0.1:8101")

    @property
    def peer(self) -> str:
        return other_site(self.site)


def read_sites(home: Path) -> dict[str, dict[str, Any]]:
    """``sites.json`` of ``home``, or ``{}`` when there is none (a single installation)."""
    path = Path(home) / SITES_FILENAME
    if not path.exists():
        return {}
    document = json.loads(path.read_text("utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: want an object mapping FR/DE to sites, got {type(document).__name__}")
    return document


def write_sites(home: Path, sites: dict[str, dict[str, Any]]) -> Path:
    """Write ``sites.json`` atomically (mode 0600)."""
    path = Path(home) / SITES_FILENAME
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(sites, handle, indent=2, sort_keys=True)
    os.replace(temporary, path)
    return path
