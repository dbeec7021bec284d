"""The default bundle with every tenant's quotas changed, for the tests of limits."""

from __future__ import annotations

from pathlib import Path

import yaml

from policies import Policy, load_bundle

REPO = Path(__file__).resolve().parents[3]


def policy_with(**quotas) -> Policy:
    """The default bundle with every tenant's quotas changed."""
    document = yaml.safe_load((REPO / "policies" / "bundles" / "default.yaml").read_text())
    for tenant in document["tenants"]:
        tenant["quotas"] = {**tenant.get("quotas", {}), **quotas}
    return Policy(load_bundle("quotas.yaml", text=yaml.safe_dump(document, sort_keys=False)))
