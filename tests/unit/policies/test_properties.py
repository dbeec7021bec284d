"""Properties of the rulebook over generated bundles and workloads."""

import datetime as dt

from hypothesis import HealthCheck, given, settings, strategies as st

from policies import Policy, Workload, parse_marking
from policies.markings import catalogue

from policy_bundles import NOW, build

ACCREDITATIONS = ["secnumcloud-3.2", "hds", "dr-homologation", "bsi-c5", "vsa-approval", "eucs-high"]
MARKINGS = list(catalogue())
PLACEABLE = [m for m in MARKINGS if catalogue()[m].placeable]
JURISDICTIONS = ["FR", "DE"]
FLAGS = ["health", "personal", "sensitive"]
MODELS = ["m1", "m2"]
days = st.integers(min_value=-400, max_value=400).map(lambda d: NOW.date() + dt.timedelta(days=d))


@st.composite
def bundles(draw):
    pools = [{
        "id": f"pool-{i}", "jurisdiction": draw(st.sampled_from(JURISDICTIONS)), "operator": "op",
        "site": draw(st.sampled_from(["a", "b", "c"])), "gpu": {"type": "H100", "count": 8},
        "accreditations": [{"id": a, "valid_until": draw(days)}
                           for a in draw(st.lists(st.sampled_from(ACCREDITATIONS), unique=True))],
    } for i in range(draw(st.integers(1, 6)))]
    tenants = []
    for i in range(draw(st.integers(1, 3))):
        home = draw(st.sampled_from(JURISDICTIONS))
        markings = draw(st.lists(st.sampled_from(MARKINGS), min_size=1, max_size=4, unique=True))
        tenants.append({
            "id": f"tenant-{i}", "name": "t", "home": home,
            "residency": sorted({home, *draw(st.lists(st.sampled_from(JURISDICTIONS)))}),
            "markings": markings, "default_marking": markings[0],
            "data_flags": draw(st.lists(st.sampled_from(FLAGS), unique=True, max_size=1)),
            "models": draw(st.lists(st.sampled_from(MODELS), unique=True)),
        })
    models = [{"id": m, "markings": draw(st.lists(st.sampled_from(MARKINGS), min_size=1, unique=True))}
              for m in MODELS]
    requirements = []
    for i in range(draw(st.integers(0, 5))):
        when = draw(st.one_of(st.builds(lambda m: {"marking": m}, st.sampled_from(PLACEABLE)),
                              st.builds(lambda f: {"data_flag": f}, st.sampled_from(FLAGS))))
        rule = {"id": f"rule-{i}", "when": when, "source": "generated",
                "accreditations": draw(st.lists(st.sampled_from(ACCREDITATIONS), unique=True, max_size=2))}
        if draw(st.booleans()):
            rule["pool_jurisdiction"] = draw(st.sampled_from(JURISDICTIONS))
        if draw(st.booleans()) or not rule["accreditations"]:
            rule["jurisdictions"] = draw(st.lists(st.sampled_from(JURISDICTIONS), min_size=1, unique=True))
        requirements.append(rule)
    equivalences = {"markings": [], "accreditations": []}
    if draw(st.booleans()):
        equivalences["markings"].append({"FR": "DR", "DE": "VS-NfD", "source": "bilateral"})
    if draw(st.booleans()):
        equivalences["accreditations"].append(
            {"accreditation": "secnumcloud-3.2", "satisfied_by": ["eucs-high"], "source": "test"})
    declarations = []
    for i in range(draw(st.integers(0, 2))):
        start = NOW + dt.timedelta(hours=draw(st.integers(-30, 5)))
        declarer = draw(st.sampled_from(JURISDICTIONS))
        declarations.append({
            "id": f"decl-{i}", "declared_by": {"operator": "declarer", "jurisdiction": declarer},
            "reason": "drill",
            "scope": {"tenants": draw(st.lists(st.sampled_from([t["id"] for t in tenants]), min_size=1, unique=True)),
                      "markings": draw(st.lists(st.sampled_from(MARKINGS), min_size=1, unique=True)),
                      "models": draw(st.lists(st.sampled_from(MODELS), min_size=1, unique=True)),
                      "directions": draw(st.lists(st.sampled_from(["FR->DE", "DE->FR"]), min_size=1, unique=True))},
            "valid_from": start, "valid_until": start + dt.timedelta(hours=draw(st.integers(1, 72))),
            "approvals": [{"operator": f"approver-{j}", "jurisdiction": draw(st.sampled_from(JURISDICTIONS)),
                           "at": start + dt.timedelta(minutes=draw(st.integers(-60, 600)))}
                          for j in range(draw(st.integers(0, 2)))],
        })
    return Policy(build({"name": "gen", "version": "1", "pools": pools, "tenants": tenants, "models": models,
                         "requirements": requirements, "equivalences": equivalences,
                         "declarations": declarations}))


@st.composite
def cases(draw):
    policy = draw(bundles())
    workload = Workload.create(
        draw(st.sampled_from(list(policy.tenants))), draw(st.sampled_from(MARKINGS)),
        data_flags=draw(st.lists(st.sampled_from(FLAGS), unique=True)),
        model=draw(st.sampled_from(MODELS)))
    at = NOW + dt.timedelta(hours=draw(st.integers(-2, 30)))
    return policy, workload, at


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(cases())
def test_a_level_above_restricted_is_never_allowed(case):
    policy, workload, at = case
    if not workload.marking.placeable:
        assert not policy.decide_all(workload, at=at).allowed


@PROPERTY
@given(cases())
def test_every_allowed_decision_is_in_residency_unless_an_active_covering_declaration_is_named(case):
    policy, workload, at = case
    tenant = policy.tenants[workload.tenant]
    declarations = {d.id: d for d in policy.bundle.declarations}
    for decision in policy.decide_all(workload, at=at).allowed:
        if decision.jurisdiction in tenant.residency and decision.declaration is None:
            continue
        declaration = declarations[decision.declaration]
        assert declaration.status(at) == "active"
        assert workload.tenant in declaration.scope.tenants
        assert workload.model in declaration.scope.models
        assert workload.marking.id in {parse_marking(m).id for m in declaration.scope.markings}
        assert f"{tenant.home}->{decision.jurisdiction}" in declaration.scope.directions


@PROPERTY
@given(cases())
def test_decisions_are_deterministic_and_decide_agrees_with_decide_all(case):
    policy, workload, at = case
    first = policy.decide_all(workload, at=at)
    assert first == policy.decide_all(workload, at=at)
    for decision in first.decisions:
        assert policy.decide(workload, decision.pool, at=at) == decision


@PROPERTY
@given(cases())
def test_deciding_once_per_pool_profile_agrees_with_decide_all(case):
    policy, workload, at = case
    assert policy.decide_profiles(workload, at=at).evaluation() == policy.decide_all(workload, at=at)


@PROPERTY
@given(cases())
def test_a_pool_missing_a_required_accreditation_is_never_allowed(case):
    policy, workload, at = case
    tenant = policy.tenants[workload.tenant]
    flags = workload.data_flags | set(tenant.data_flags)
    satisfied_by = {eq.accreditation: {eq.accreditation, *eq.satisfied_by}
                    for eq in policy.bundle.equivalences.accreditations}
    for decision in policy.decide_all(workload, at=at).allowed:
        pool = policy.pools[decision.pool].pool
        valid = {a.id for a in pool.accreditations if a.valid_until >= at.date()}
        for rule in policy.bundle.requirements:
            matches = (rule.when.data_flag in flags if rule.when.data_flag
                       else parse_marking(rule.when.marking).id == workload.marking.id)
            if not matches or rule.pool_jurisdiction not in (None, pool.jurisdiction):
                continue
            if rule.jurisdictions is not None and pool.jurisdiction not in rule.jurisdictions:
                # only a national marking may cross, and only under a named declaration
                assert rule.when.marking and decision.declaration is not None
                continue
            for needed in rule.accreditations:
                assert valid & satisfied_by.get(needed, {needed}), (rule.id, needed, pool.id)
