"""What a new bundle changes, in the terms an operator reads: tenants, pools, accreditations,
models, rules and settings added, removed or changed. Pure.

>>> from policies import load_bundle, default_bundle_path
>>> old = load_bundle(default_bundle_path())
>>> paris = old.pools[0].model_copy(update={"accreditations": old.pools[0].accreditations[:2]})
>>> new = old.model_copy(update={"pools": [paris, *old.pools[1:]]})
>>> [str(c) for c in bundle_diff(old, new)]
['pool fr-paris changed: accreditation dr-homologation removed (was valid until 2031-12-31)']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from policies.bundle import Bundle, Pool

Kind = Literal["added", "removed", "changed"]

#: Sections compared item by item (by id), and the singular used in messages.
_SECTIONS = {"pools": "pool", "tenants": "tenant", "models": "model", "requirements": "rule",
             "declarations": "declaration"}


@dataclass(frozen=True)
class Change:
    """One item of a bundle that a new bundle adds, removes or changes (with what changed)."""

    section: str
    id: str
    kind: Kind
    details: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        what = f"{_SECTIONS.get(self.section, self.section)} {self.id}" if self.id else self.section
        return f"{what} {self.kind}" + (f": {'; '.join(self.details)}" if self.details else "")

    def to_json(self) -> dict[str, Any]:
        return {"section": self.section, "id": self.id, "kind": self.kind, "details": list(self.details)}


def _accreditations(old: Pool, new: Pool) -> list[str]:
    before = {a.id: a for a in old.accreditations}
    after = {a.id: a for a in new.accreditations}
    out = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a is None:
            out.append(f"accreditation {key} added (valid until {b.valid_until})")
        elif b is None:
            out.append(f"accreditation {key} removed (was valid until {a.valid_until})")
        elif a.valid_until != b.valid_until:
            out.append(f"accreditation {key} valid until {a.valid_until} → {b.valid_until}")
        elif a != b:
            out.extend(f"accreditation {key} {change}" for change in sorted(_fields(a, b)))
    return out


def _fields(old: Any, new: Any, skip: Sequence[str] = ()) -> list[str]:
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    return [f"{key}: {a.get(key)!r} → {b.get(key)!r}" for key in a.keys() | b.keys()
            if key not in skip and a.get(key) != b.get(key)]


def bundle_diff(old: Bundle, new: Bundle) -> list[Change]:
    """Every change from ``old`` to ``new``, section by section, in bundle order."""
    changes: list[Change] = []
    for section in _SECTIONS:
        before = {item.id: item for item in getattr(old, section)}
        after = {item.id: item for item in getattr(new, section)}
        for key in [*before, *(k for k in after if k not in before)]:
            a, b = before.get(key), after.get(key)
            if a is None:
                changes.append(Change(section, key, "added"))
            elif b is None:
                changes.append(Change(section, key, "removed"))
            elif a != b:
                details = (_accreditations(a, b) + sorted(_fields(a, b, skip=("accreditations",)))
                           if section == "pools" else sorted(_fields(a, b)))
                changes.append(Change(section, key, "changed", tuple(details)))
    for section in ("settings", "equivalences"):
        a, b = getattr(old, section), getattr(new, section)
        if a != b:
            changes.append(Change(section, "", "changed", tuple(sorted(_fields(a, b)))))
    return changes
