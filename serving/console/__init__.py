"""The web console for auditors and operators, served by the gateway at ``/console``.

The page is plain hand-written ES modules, CSS and SVG shipped in this
package (``static/``): no CDN, no outside fonts or scripts, a strict
Content-Security-Policy. It calls only the gateway's public APIs with the
user's key (kept in the browser's session storage), and verifies ledger
entries in the browser: RFC 6962 leaf and node hashes with WebCrypto SHA-256,
the tree head's Ed25519 signature with WebCrypto Ed25519.

- :mod:`serving.console.router`: :func:`console_router`, the page and assets;
- :mod:`serving.console.api`: the read-only APIs the console needs that the
  gateway lacks (``/console/api/whoami``, ``/corridor``, ``/security-events``).
"""

from serving.console.api import console_api_router
from serving.console.router import console_router

__all__ = ["console_api_router", "console_router"]
