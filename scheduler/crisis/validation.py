"""Checking a run-time crisis declaration before it exists: reason, window and scope.

The scope is the bundle's own :class:`~policies.bundle.Scope` (one definition of what a
scope is), checked against the bundle by :func:`~policies.bundle.scope_issues`; a marking
above restricted is refused here, since it never runs, in a crisis or not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from policies import Policy, parse_marking
from policies.bundle import Scope, scope_issues
from scheduler.crisis.errors import InvalidDeclaration


def check_declaration(policy: Policy, scope: Mapping[str, Any] | Scope, reason: str, hours: Any) -> Scope:
    """The scope with markings normalised; :class:`InvalidDeclaration` names what is wrong."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidDeclaration("reason: give the reason for the declaration, e.g. "
                                 "'fr-paris down after a cyber attack'", param="reason")
    maximum = policy.bundle.settings.crisis_max_hours
    if (isinstance(hours, bool) or not isinstance(hours, (int, float)) or not math.isfinite(hours)
            or not 0 < hours <= maximum):
        raise InvalidDeclaration(f"valid_for_hours: got {hours!r}, want a number of hours > 0 "
                                 f"and at most {maximum:g} (settings.crisis_max_hours)",
                                 param="valid_for_hours")
    try:
        parsed = scope if isinstance(scope, Scope) else Scope.model_validate(dict(scope), strict=True)
    except (ValidationError, TypeError, ValueError) as exc:
        raise _invalid_scope(exc) from exc
    problems = scope_issues(parsed, set(policy.tenants), set(policy.models), "scope")
    if problems:
        where, problem = problems[0]
        raise InvalidDeclaration(f"{where}: {problem}", param=where)
    markings = []
    for index, value in enumerate(parsed.markings):
        marking = parse_marking(value)  # known: checked above
        if not marking.placeable:
            raise InvalidDeclaration(f"scope.markings[{index}]: {marking.id} is above restricted and "
                                     f"never runs on this platform, in a crisis or not",
                                     param=f"scope.markings[{index}]")
        markings.append(marking.id)
    return parsed.model_copy(update={
        "tenants": list(dict.fromkeys(parsed.tenants)), "markings": list(dict.fromkeys(markings)),
        "models": list(dict.fromkeys(parsed.models)), "directions": list(dict.fromkeys(parsed.directions))})


def _invalid_scope(exc: Exception) -> InvalidDeclaration:
    """The first schema problem of a scope, as ``scope.<field>[<i>]: …``."""
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = "scope" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}"
                                  for part in first["loc"])
        hint = (" (a scope has tenants, markings, models and directions, each a non-empty list "
                "of strings; directions 'FR->DE' and/or 'DE->FR')")
        return InvalidDeclaration(f"{where}: {first['msg']}{hint}", param=where)
    return InvalidDeclaration(f"scope: {exc}", param="scope")
