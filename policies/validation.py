"""Loading a bundle: the schema (``policies.bundle``), then checks across its sections.

Each problem is a :class:`BundleIssue` naming the file, the path inside it and
what is wrong; :func:`load_bundle` reports them all at once. Besides plain
references (unknown model, duplicate id, unknown marking), the checks enforce
what the schema alone cannot:

- a tenant's ``minimum_marking`` is one of its markings, and its default
  marking is not below it;
- every restricted marking (above ``PUBLIC``, placeable) that a tenant may
  send or a model may process has, for every jurisdiction that has pools, a
  requirement rule that applies there — possibly one whose ``jurisdictions``
  leave that jurisdiction out, which states explicitly that the marking never
  runs there. A missing rule is an error, never a free pass::

      bundle.yaml: tenants[4].markings[1]: NATO RESTRICTED may be sent by tenant
      eu-agency but no requirement rule applies to it in DE (pools de-frankfurt) …

- equivalences name rules that exist; attestation types name accreditations
  the rule requires.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

from policies.bundle import JURISDICTIONS, Bundle, Requirement, Tenant, scope_issues
from policies.exceptions import BundleError, BundleIssue, UnknownMarkingError
from policies.loading import load_yaml_model
from policies.markings import Marking, Scheme, parse_marking


def load_bundle(path: str | Path, *, text: str | None = None) -> Bundle:
    """Load and fully validate a bundle file; raises :class:`BundleError` listing every issue."""
    bundle = load_yaml_model(path, Bundle, text=text)
    issues = check_references(bundle, str(path))
    if issues:
        raise BundleError(issues)
    return bundle


def check_references(bundle: Bundle, file: str) -> list[BundleIssue]:
    """Checks across sections of a schema-valid bundle; returns every issue found."""
    issues: list[BundleIssue] = []

    def issue(path: str, message: str) -> None:
        issues.append(BundleIssue(file, path, message))

    def check_marking(path: str, value: str) -> Marking | None:
        try:
            return parse_marking(value)
        except UnknownMarkingError as exc:
            issue(path, str(exc))
            return None

    for section in ("pools", "tenants", "models", "requirements", "declarations", "priority_classes"):
        counts = Counter(item.id for item in getattr(bundle, section))
        for index, item in enumerate(getattr(bundle, section)):
            if counts[item.id] > 1:
                issue(f"{section}[{index}].id", f"duplicate id {item.id!r}")

    model_ids = {model.id for model in bundle.models}
    tenant_ids = {tenant.id for tenant in bundle.tenants}
    rule_ids = {rule.id for rule in bundle.requirements}
    coverage = _Coverage(bundle)
    for index, model in enumerate(bundle.models):
        for m, value in enumerate(model.markings):
            marking = check_marking(f"models[{index}].markings[{m}]", value)
            for jurisdiction in coverage.uncovered(marking, None):
                issue(f"models[{index}].markings[{m}]", coverage.message(marking, f"model {model.id}",
                                                                         "processed by", jurisdiction))
    for index, tenant in enumerate(bundle.tenants):
        path = f"tenants[{index}]"
        allowed = {}
        for m, value in enumerate(tenant.markings):
            marking = check_marking(f"{path}.markings[{m}]", value)
            if marking is None:
                continue
            allowed[marking.id] = marking
            for jurisdiction in coverage.uncovered(marking, tenant):
                issue(f"{path}.markings[{m}]", coverage.message(marking, f"tenant {tenant.id}",
                                                                "sent by", jurisdiction))
        default = check_marking(f"{path}.default_marking", tenant.default_marking)
        if default is not None and default.id not in allowed:
            issue(f"{path}.default_marking", f"{default.id!r} is not among the tenant's markings")
        if tenant.minimum_marking is not None:
            minimum = check_marking(f"{path}.minimum_marking", tenant.minimum_marking)
            if minimum is not None and minimum.id not in allowed:
                issue(f"{path}.minimum_marking", f"{minimum.id!r} is not among the tenant's markings")
            elif minimum is not None and default is not None and default.level < minimum.level:
                issue(f"{path}.default_marking", f"{default.id!r} is below the tenant's minimum_marking "
                      f"{minimum.id!r}; make the default at least {minimum.id!r}")
        if tenant.home not in tenant.residency:
            issue(f"{path}.residency", f"must include the tenant's home jurisdiction {tenant.home!r}")
        for m, model_id in enumerate(tenant.models):
            if model_id not in model_ids:
                issue(f"{path}.models[{m}]", f"unknown model {model_id!r}; known: {sorted(model_ids)}")
    for index, rule in enumerate(bundle.requirements):
        if rule.when.marking is not None:
            check_marking(f"requirements[{index}].when.marking", rule.when.marking)
        if rule.jurisdictions is None and not rule.accreditations:
            issue(f"requirements[{index}]", "requires nothing: give jurisdictions or accreditations")
        for accreditation in rule.attestation:
            if accreditation not in rule.accreditations:
                issue(f"requirements[{index}].attestation.{accreditation}",
                      f"{accreditation!r} is not among the rule's accreditations {rule.accreditations}")
    for index, eq in enumerate(bundle.equivalences.accreditations):
        for r, rule_id in enumerate(eq.rules or ()):
            if rule_id not in rule_ids:
                issue(f"equivalences.accreditations[{index}].rules[{r}]",
                      f"unknown requirement rule {rule_id!r}; known: {sorted(rule_ids)}")
        if eq.accreditation in eq.satisfied_by:
            issue(f"equivalences.accreditations[{index}].satisfied_by",
                  f"{eq.accreditation!r} cannot be its own equivalent")
    for index, eq in enumerate(bundle.equivalences.markings):
        for side in JURISDICTIONS:
            marking = check_marking(f"equivalences.markings[{index}].{side}", getattr(eq, side))
            if marking is not None and marking.scheme != Scheme(side):
                issue(f"equivalences.markings[{index}].{side}", f"{marking.id!r} is not a {side} marking")
    max_window = dt.timedelta(hours=bundle.settings.crisis_max_hours)
    for index, declaration in enumerate(bundle.declarations):
        path = f"declarations[{index}]"
        if declaration.valid_until <= declaration.valid_from:
            issue(f"{path}.valid_until", "must be after valid_from")
        elif declaration.valid_until - declaration.valid_from > max_window:
            issue(f"{path}.valid_until", f"window exceeds settings.crisis_max_hours "
                  f"({bundle.settings.crisis_max_hours:g} h)")
        for a, approval in enumerate(declaration.approvals):
            if approval.operator == declaration.declared_by.operator:
                issue(f"{path}.approvals[{a}]", "the declarer cannot approve their own declaration")
        for where, problem in scope_issues(declaration.scope, tenant_ids, model_ids, f"{path}.scope"):
            issue(where, problem)
    for index, priority in enumerate(bundle.priority_classes):
        path = f"priority_classes[{index}]"
        if priority.id == "standard":
            issue(f"{path}.id", "'standard' is the implicit lowest class; name this one otherwise")
        for t, tenant_id in enumerate(priority.tenants or ()):
            if tenant_id not in tenant_ids:
                issue(f"{path}.tenants[{t}]", f"unknown tenant {tenant_id!r}; known: {sorted(tenant_ids)}")
        for m, marking in enumerate(priority.markings or ()):
            check_marking(f"{path}.markings[{m}]", marking)
    return issues


class _Coverage:
    """Which jurisdictions with pools have a requirement rule for a restricted marking."""

    def __init__(self, bundle: Bundle) -> None:
        self.pools: dict[str, list[str]] = {}
        for pool in bundle.pools:
            self.pools.setdefault(pool.jurisdiction, []).append(pool.id)
        self.rules: dict[str, list[Requirement]] = {}
        for rule in bundle.requirements:
            if rule.when.marking is None:
                continue
            try:
                self.rules.setdefault(parse_marking(rule.when.marking).id, []).append(rule)
            except UnknownMarkingError:
                continue  # reported where the rule is checked

    def uncovered(self, marking: Marking | None, tenant: Tenant | None) -> list[str]:
        """Jurisdictions with pools where no rule applies to ``marking`` (for ``tenant``'s data,
        or, with no tenant, for data of any origin)."""
        if marking is None or marking.level < 1 or not marking.placeable:
            return []
        rules = self.rules.get(marking.id, [])
        origin = tenant.home if tenant is not None else None
        return [j for j in JURISDICTIONS if j in self.pools and not any(
            r.pool_jurisdiction in (None, j) and r.when.origin in (None, origin) for r in rules)]

    def message(self, marking: Marking, who: str, verb: str, jurisdiction: str) -> str:
        return (f"{marking.id} may be {verb} {who} but no requirement rule applies to it in "
                f"{jurisdiction} (pools {', '.join(self.pools[jurisdiction])}); add a rule with "
                f"when: {{marking: {marking.id}}} for {jurisdiction}, or one whose jurisdictions "
                f"leave {jurisdiction} out to state that it never runs there")
