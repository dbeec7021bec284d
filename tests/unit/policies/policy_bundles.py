"""Small test bundles built as dicts, so each test states exactly what it changes."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import yaml

from policies import Bundle, Policy
from policies.loading import validate_document
from policies.validation import check_references
from policies.exceptions import BundleError

FAR = dt.date(2099, 12, 31)
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)


def pool(id: str, jurisdiction: str, *accreditations: str, until: dt.date = FAR) -> dict[str, Any]:
    """A pool; ``bsi-c5`` is a Type 2 attestation (``bsi-c5:type-1`` for a Type 1)."""
    def accreditation(spec: str) -> dict[str, Any]:
        name, _, attestation = spec.partition(":")
        if name == "bsi-c5":
            attestation = attestation or "type-2"
        return {"id": name, "valid_until": until, **({"attestation": attestation} if attestation else {})}
    return {
        "id": id, "jurisdiction": jurisdiction, "operator": f"{jurisdiction} operator",
        "site": id, "gpu": {"type": "H100", "count": 8},
        "accreditations": [accreditation(a) for a in accreditations],
    }


FR_RESTRICTED = ["dr-national", "restreint-ue-fr", "nato-restricted-fr"]
DE_RESTRICTED = ["vsnfd-national", "restreint-ue-de", "nato-restricted-de"]


def crisis_equivalences() -> list[dict[str, Any]]:
    """The default bundle's crisis-only accreditation equivalences, both directions."""
    return [
        {"accreditation": "bsi-c5", "satisfied_by": ["secnumcloud-3.2"], "crisis_only": True,
         "rules": DE_RESTRICTED, "source": "crisis arrangement"},
        {"accreditation": "vsa-approval", "satisfied_by": ["dr-homologation"], "crisis_only": True,
         "rules": DE_RESTRICTED, "source": "VSA Anlage V 1.4"},
        {"accreditation": "secnumcloud-3.2", "satisfied_by": ["bsi-c5"], "crisis_only": True,
         "rules": FR_RESTRICTED, "source": "crisis arrangement"},
        {"accreditation": "dr-homologation", "satisfied_by": ["vsa-approval"], "crisis_only": True,
         "rules": FR_RESTRICTED, "source": "II 901"},
    ]


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
             "markings": ["PUBLIC", "RESTREINT UE", "NATO RESTRICTED"], "default_marking": "PUBLIC",
             "models": ["tiny", "other"]},
        ],
        "models": [
            {"id": "tiny", "markings": ["PUBLIC", "DR", "VS-NfD", "RESTREINT UE", "NATO RESTRICTED"]},
            {"id": "other", "markings": ["PUBLIC"]},
        ],
        "requirements": [
            {"id": "dr-national", "when": {"marking": "DR"}, "jurisdictions": ["FR"],
             "accreditations": ["secnumcloud-3.2", "dr-homologation"], "source": "IGI 1300"},
            {"id": "vsnfd-national", "when": {"marking": "VS-NfD"}, "jurisdictions": ["DE"],
             "accreditations": ["bsi-c5", "vsa-approval"], "source": "VSA Anlage V"},
            *[{"id": f"{prefix}-{j.lower()}", "when": {"marking": marking}, "pool_jurisdiction": j,
               "accreditations": (["secnumcloud-3.2", "dr-homologation"] if j == "FR"
                                  else ["bsi-c5", "vsa-approval"]), "source": "II 901 / VSA Anlage VII"}
              for prefix, marking in (("restreint-ue", "RESTREINT UE"), ("nato-restricted", "NATO RESTRICTED"))
              for j in ("FR", "DE")],
            {"id": "health-fr", "when": {"data_flag": "health", "origin": "FR"},
             "accreditations": ["hds"], "source": "HDS 2024"},
            {"id": "health-de", "when": {"data_flag": "health", "origin": "DE"},
             "accreditations": ["bsi-c5"], "attestation": {"bsi-c5": "type-2"}, "source": "§ 393 SGB V"},
            {"id": "sensitive-secnumcloud", "when": {"data_flag": "sensitive", "origin": "FR"},
             "accreditations": ["secnumcloud-3.2"], "source": "circular 6404/SG"},
            {"id": "personal-eu", "when": {"data_flag": "personal"}, "jurisdictions": ["FR", "DE"],
             "source": "GDPR chapter V"},
        ],
        "equivalences": {"markings": [{"FR": "DR", "DE": "VS-NfD", "source": "bilateral"}],
                         "accreditations": crisis_equivalences()},
    }


def declaration(**overrides: Any) -> dict[str, Any]:
    """An FR→DE declaration for fr-interior DR on `tiny`, declared by FR, approved by DE.

    ``scope`` may be given whole or as ``scope_changes`` merged into the default scope.
    """
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
    value["scope"].update(overrides.pop("scope_changes", {}))
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
