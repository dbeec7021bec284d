"""The demo API keys of an installation: one per tenant and role, the operators', the auditor's.

Written to ``demo-keys.json`` (mode 0600) as ``{"<tenant>/<role>": key, "*/auditor": key,
"FR/operator": key, "DE/operator": key}`` and reused while they still authenticate. At a site
only its own tenants' and operator's keys are issued (the embedded corridor issues both sites'
keys before they start, with the auditor's valid at both).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from policies import Policy
from serving.gateway.auth import KeyStore
from serving.installation.stores import open_keys


def demo_keystore(home: Path, policy: Policy, site: str | None, *,
                  database: str | None = None) -> tuple[KeyStore, dict[str, str]]:
    """The key store of ``home`` (or of the site's ``database``) and its demo keys (issued now
    unless valid ones exist)."""
    store = open_keys(home, site, database)
    demo_path = home / "demo-keys.json"
    if demo_path.exists():
        existing = json.loads(demo_path.read_text("utf-8"))
        if existing and all(store.authenticate(key) for key in existing.values()):
            return store, existing
    keys = {}
    for tenant in policy.tenants.values():
        if site in (None, tenant.home):
            for role in ("app", "admin"):
                keys[f"{tenant.id}/{role}"] = store.issue(role, tenant=tenant.id)
    keys["*/auditor"] = store.issue("auditor", scope=("*",))
    for jurisdiction in ("FR", "DE"):
        if site in (None, jurisdiction):
            keys[f"{jurisdiction}/operator"] = store.issue("operator", jurisdiction=jurisdiction)
    fd = os.open(demo_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(keys, handle, indent=2)
    return store, keys
