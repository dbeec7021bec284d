"""Corridor's rulebook: markings, the policy bundle, and ``decide``.

Pure and deterministic: no Ray, no FastAPI, no vLLM. The scheduler and the
gateway ask the same :class:`Policy` where a replica may be placed, which
replica a request may be routed to, and where a batch job may run.

>>> from policies import Policy, Workload
>>> policy = Policy.load()
>>> workload = Workload.create("fr-interior", "DR", model="corridor-tiny")
>>> policy.decide_all(workload).summary()
'1/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION'
"""

from policies.bundle import Bundle, Declaration, Pool, Tenant, default_bundle_path
from policies.decision import Decision, Evaluation, Reason, ReasonCode, Reliance
from policies.exceptions import (
    BundleError, BundleIssue, PolicyError, UnknownCaveatError, UnknownDataFlagError, UnknownMarkingError,
)
from policies.markings import Caveat, Marking, parse_caveat, parse_marking
from policies.rulebook import Policy, decide
from policies.validation import load_bundle
from policies.workload import MarkingRaise, Workload, apply_minimum_marking, parse_caveats, parse_data_flags

__all__ = [
    "Bundle", "BundleError", "BundleIssue", "Caveat", "Decision", "Declaration", "Evaluation",
    "Marking", "MarkingRaise", "Policy", "PolicyError", "Pool", "Reason", "ReasonCode", "Reliance",
    "Tenant", "UnknownCaveatError", "UnknownDataFlagError", "UnknownMarkingError", "Workload",
    "apply_minimum_marking", "decide", "default_bundle_path", "load_bundle", "parse_caveat",
    "parse_caveats", "parse_data_flags", "parse_marking",
]
