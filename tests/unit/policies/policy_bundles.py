"""Small test bundles built as dicts, so each test states exactly what it changes."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import yaml

from policies import Bundle, Policy
from policies.loading import validate_document
from policies.bundle import check_references
from policies.exceptions import BundleError

FAR = dt.date(2099, 12, 31)
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)


def pool(id: str, jurisdiction: str, *accreditations: str, until: dt.date = FAR) -> dict[str, Any]:
    return {
        "id": id, "jurisdiction": jurisdiction, "operator": f"{jurisdiction} operator",
        "site": id, "gpu": {"type": "H100", "count": 8},
        "accreditations": [{"id": a, "valid_until": until} for a in accreditations],
    }


def base() -> dict[str, Any]:
    """A bundle shaped like the default one, with far-future accreditations."""
    return {
        "name": "test", "version": "1",
        "pools": [
            pool("fr-paris", "FR", "secnumcloud-3.2", "hds", "dr-homologation"),
            pool("fr-lyon", "FR", "secnumcloud-3.2"),
            pool("de-frankfurt", "DE", "bsi-c5", "vsa-approval"),
            pool("de-berlin", "DE", "bsi-c5"),
        ],
        "tenants": [
            {"id": "fr-interior", "name": "FR interior", "home": "FR", "residency": ["FR"],
             "markings": ["PUBLIC", "DR"], "default_marking": "DR", "models": ["tiny"]},
            {"id": "fr-health", "name": "FR hospital", "home": "FR", "residency": ["FR"],
             "markings": ["PUBLIC"], "default_marking": "PUBLIC", "data_flags": ["health"],
             "models": ["tiny"]},
            {"id": "de-federal-it", "name": "DE federal IT", "home": "DE", "residency": ["DE"],
             "markings": ["PUBLIC", "VS-NfD"], "default_marking": "VS-NfD", "models": ["tiny"]},
            {"id": "de-health", "name": "DE hospital", "home": "DE", "residency": ["DE"],
             "markings": ["PUBLIC"], "default_marking": "PUBLIC", "data_flags": ["health"],
             "models": ["tiny"]},
            {"id": "eu-agency", "name": "EU agency", "home": "FR", "residency": ["FR", "DE"],
             "markings": ["PUBLIC", "RESTREINT UE"], "default_marking": "PUBLIC",
             "models": ["tiny", "other"]},
        ],
        "models": [
            {"id": "tiny", "markings": ["PUBLIC", "DR", "VS-NfD", "RESTREINT UE"]},
            {"id": "other", "markings": ["PUBLIC"]},
        ],
        "requirements": [
            {"id": "dr-national", "when": {"marking": "DR"}, "jurisdictions": ["FR"],
             "accreditations": ["secnumcloud-3.2", "dr-homologation"], "source": "IGI 1300"},
            {"id": "vsnfd-national", "when": {"marking": "VS-NfD"}, "jurisdictions": ["DE"],
             "accreditations": ["bsi-c5", "vsa-approval"], "source": "VSA § 50"},
            {"id": "health-fr", "when": {"data_flag": "health"}, "pool_jurisdiction": "FR",
             "accreditations": ["hds"], "source": "HDS 2024"},
            {"id": "health-de", "when": {"data_flag": "health"}, "pool_jurisdiction": "DE",
             "accreditations": ["bsi-c5"], "source": "§ 393 SGB V"},
            {"id": "sensitive-secnumcloud", "when": {"data_flag": "sensitive"},
             "accreditations": ["secnumcloud-3.2"], "source": "SecNumCloud 3.2 § 19"},
        ],
        "equivalences": {"markings": [{"FR": "DR", "DE": "VS-NfD", "source": "bilateral"}]},
    }


def declaration(**overrides: Any) -> dict[str, Any]:
    """An FR→DE declaration for fr-interior DR on `tiny`, declared by FR, approved by DE."""
    value = {
        "id": "crisis-1",
        "declared_by": {"operator": "anne", "jurisdiction": "FR"},
        "reason": "Paris region outage",
        "scope": {"tenants": ["fr-interior"], "markings": ["DR"], "models": ["tiny"],
                  "directions": ["FR->DE"]},
        "valid_from": NOW - dt.timedelta(hours=1),
        "valid_until": NOW + dt.timedelta(hours=23),
        "approvals": [{"operator": "bernd", "jurisdiction": "DE",
                       "at": NOW - dt.timedelta(minutes=30)}],
    }
    value.update(overrides)
    return value


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def build(document: dict[str, Any]) -> Bundle:
    """Validate a bundle document exactly as a file would be (schema, then references)."""
    bundle = validate_document(copy.deepcopy(document), Bundle, "test.yaml")
    issues = check_references(bundle, "test.yaml")
    if issues:
        raise BundleError(issues)
    return bundle


def policy(document: dict[str, Any] | None = None) -> Policy:
    return Policy(build(document or base()))
