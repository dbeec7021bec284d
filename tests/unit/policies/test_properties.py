"""Properties of the rulebook over generated bundles, declarations and workloads."""

import datetime as dt

from hypothesis import HealthCheck, given, settings, strategies as st

from policies import Policy, Workload, parse_marking
from policies.archive import replay
from policies.bundle import ATTESTATION_RANK
from policies.markings import catalogue, caveat_catalogue

from policy_bundles import NOW, build

ACCREDITATIONS = ["secnumcloud-3.2", "hds", "dr-homologation", "bsi-c5", "vsa-approval", "eucs-high"]
MARKINGS = list(catalogue())
PLACEABLE = [m for m in MARKINGS if catalogue()[m].placeable]
RESTRICTED = [m for m in PLACEABLE if catalogue()[m].level == 1]
CAVEATS = list(caveat_catalogue())
JURISDICTIONS = ["FR", "DE"]
FLAGS = ["health", "personal", "sensitive"]
MODELS = ["m1", "m2"]
days = st.integers(min_value=-400, max_value=400).map(lambda d: NOW.date() + dt.timedelta(days=d))


@st.composite
def requirement(draw, id, when):
    rule = {"id": id, "when": when, "source": "generated",
            "accreditations": draw(st.lists(st.sampled_from(ACCREDITATIONS), unique=True, max_size=2))}
    if draw(st.booleans()):
        rule["pool_jurisdiction"] = draw(st.sampled_from(JURISDICTIONS))
    if draw(st.booleans()) or not rule["accreditations"]:
        rule["jurisdictions"] = draw(st.lists(st.sampled_from(JURISDICTIONS), min_size=1, unique=True))
    if "bsi-c5" in rule["accreditations"] and draw(st.booleans()):
        rule["attestation"] = {"bsi-c5": draw(st.sampled_from(["type-1", "type-2"]))}
    return rule


@st.composite
def bundles(draw):
    pools = []
    for i in range(draw(st.integers(1, 6))):
        accreditations = []
        for a in draw(st.lists(st.sampled_from(ACCREDITATIONS), unique=True)):
            item = {"id": a, "valid_until": draw(days)}
            if a == "bsi-c5" and draw(st.booleans()):
                item["attestation"] = draw(st.sampled_from(["type-1", "type-2"]))
            accreditations.append(item)
        pools.append({"id": f"pool-{i}", "jurisdiction": draw(st.sampled_from(JURISDICTIONS)), "operator": "op",
                      "site": draw(st.sampled_from(["a", "b", "c"])), "gpu": {"type": "H100", "count": 8},
                      "accreditations": accreditations})
    tenants = []
    for i in range(draw(st.integers(1, 3))):
        home = draw(st.sampled_from(JURISDICTIONS))
        markings = draw(st.lists(st.sampled_from(MARKINGS), min_size=1, max_size=4, unique=True))
        tenant = {
            "id": f"tenant-{i}", "name": "t", "home": home,
            "residency": sorted({home, *draw(st.lists(st.sampled_from(JURISDICTIONS)))}),
            "markings": markings, "default_marking": markings[0],
            "data_flags": draw(st.lists(st.sampled_from(FLAGS), unique=True, max_size=1)),
            "models": draw(st.lists(st.sampled_from(MODELS), unique=True)),
        }
        if draw(st.booleans()):
            lowest = min(markings, key=lambda m: catalogue()[m].level)
            tenant["minimum_marking"] = tenant["default_marking"] = lowest
        tenants.append(tenant)
    models = [{"id": m, "markings": draw(st.lists(st.sampled_from(MARKINGS), min_size=1, unique=True))}
              for m in MODELS]
    requirements = []
    for i in range(draw(st.integers(0, 5))):
        when = draw(st.one_of(st.builds(lambda m: {"marking": m}, st.sampled_from(PLACEABLE)),
                              st.builds(lambda f: {"data_flag": f}, st.sampled_from(FLAGS))))
        if draw(st.booleans()):
            when["origin"] = draw(st.sampled_from(JURISDICTIONS))
        requirements.append(draw(requirement(f"rule-{i}", when)))
    for marking in RESTRICTED:  # every restricted marking needs a rule wherever pools are
        rule = draw(requirement(f"cover-{marking.lower().replace(' ', '-')}", {"marking": marking}))
        rule.pop("pool_jurisdiction", None)
        requirements.append(rule)
    rule_ids = [r["id"] for r in requirements]
    equivalences = {"markings": [], "accreditations": []}
    if draw(st.booleans()):
        equivalences["markings"].append({"FR": "DR", "DE": "VS-NfD", "source": "bilateral"})
    for _ in range(draw(st.integers(0, 3))):
        accreditation = draw(st.sampled_from(ACCREDITATIONS))
        equivalences["accreditations"].append({
            "accreditation": accreditation, "source": "test", "crisis_only": draw(st.booleans()),
            "satisfied_by": draw(st.lists(st.sampled_from([a for a in ACCREDITATIONS if a != accreditation]),
                                          min_size=1, max_size=2, unique=True)),
            "rules": draw(st.one_of(st.none(), st.lists(st.sampled_from(rule_ids), min_size=1, unique=True)))})
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
                      "directions": draw(st.lists(st.sampled_from(["FR->DE", "DE->FR"]), min_size=1, unique=True)),
                      "data_flags": draw(st.lists(st.sampled_from(FLAGS), unique=True))},
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
        model=draw(st.sampled_from(MODELS)),
        caveats=draw(st.lists(st.sampled_from(CAVEATS), max_size=1)))
    at = NOW + dt.timedelta(hours=draw(st.integers(-2, 30)))
    return policy, workload, at


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def held(policy, pool, accreditation, rule, *, crossing, at, rank=0):
    """Independent oracle: the pool holds ``accreditation`` (of at least ``rank``) valid at ``at``,
    or an equivalent the bundle declares for ``rule`` (crisis-only ones only when crossing)."""
    valid = {a.id: ATTESTATION_RANK.get(a.attestation or "", 0) for a in pool.accreditations
             if a.valid_until >= at.date()}
    if accreditation in valid and valid[accreditation] >= rank:
        return True
    return any(eq.accreditation == accreditation and (eq.rules is None or rule in eq.rules)
               and (crossing or not eq.crisis_only) and set(eq.satisfied_by) & set(valid)
               for eq in policy.bundle.equivalences.accreditations)


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
    evaluation = policy.decide_all(workload, at=at)
    flags = evaluation.workload.data_flags | set(tenant.data_flags)
    for decision in evaluation.allowed:
        if decision.jurisdiction in tenant.residency and decision.declaration is None:
            continue
        declaration = declarations[decision.declaration]
        assert declaration.status(at) == "active"
        assert workload.tenant in declaration.scope.tenants
        assert workload.model in declaration.scope.models
        assert decision.effective_marking in {parse_marking(m).id for m in declaration.scope.markings}
        assert f"{tenant.home}->{decision.jurisdiction}" in declaration.scope.directions
        assert flags <= set(declaration.scope.data_flags)


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
def test_no_allowed_decision_lacks_an_accreditation_of_its_origins_or_hosts_rules_without_an_equivalence(case):
    """Under any set of declarations: the rules that follow the data (its origin's), and under a
    crossing the home rules and the host's rules for the equivalent marking, all hold."""
    policy, workload, at = case
    tenant = policy.tenants[workload.tenant]
    evaluation = policy.decide_all(workload, at=at)
    effective = evaluation.workload.marking.id
    flags = evaluation.workload.data_flags | set(tenant.data_flags)
    equivalent = {(parse_marking(e.FR).id, "DE"): parse_marking(e.DE).id
                  for e in policy.bundle.equivalences.markings}
    equivalent |= {(parse_marking(e.DE).id, "FR"): parse_marking(e.FR).id for e in policy.bundle.equivalences.markings}
    for decision in evaluation.allowed:
        pool = policy.pools[decision.pool].pool
        crossing = decision.declaration is not None
        host_marking = equivalent.get((effective, pool.jurisdiction), effective) if crossing else effective
        for rule in policy.bundle.requirements:
            if rule.when.origin not in (None, tenant.home):
                continue
            if rule.when.data_flag is not None:
                if rule.when.data_flag not in flags:
                    continue
                places = {pool.jurisdiction, *([tenant.home] if crossing else [])}
            else:
                marking = parse_marking(rule.when.marking).id
                places = set()
                if marking == effective and crossing:
                    places.add(tenant.home)
                if marking in (effective, host_marking):
                    places.add(pool.jurisdiction)
            if not any(rule.pool_jurisdiction in (None, place) for place in places):
                continue
            if rule.jurisdictions is not None and pool.jurisdiction not in rule.jurisdictions:
                assert rule.when.marking and crossing, (rule.id, decision.pool)
                continue
            for accreditation in rule.accreditations:
                rank = ATTESTATION_RANK.get(rule.attestation.get(accreditation, ""), 0)
                assert held(policy, pool, accreditation, rule.id, crossing=crossing, at=at, rank=rank), (
                    rule.id, accreditation, pool.id)


@PROPERTY
@given(cases())
def test_a_caveated_workload_never_crosses(case):
    policy, workload, at = case
    for decision in policy.decide_all(workload, at=at).allowed:
        if workload.caveats:
            assert decision.declaration is None
            assert {caveat_catalogue()[c].jurisdiction for c in workload.caveats} == {decision.jurisdiction}


@PROPERTY
@given(cases())
def test_what_an_allowed_decision_relied_on_is_held_and_valid_at_decision_time(case):
    policy, workload, at = case
    for decision in policy.decide_all(workload, at=at).allowed:
        pool = policy.pools[decision.pool].pool
        valid = {a.id: a.valid_until.isoformat() for a in pool.accreditations if a.valid_until >= at.date()}
        for reliance in decision.relied_on:
            assert valid.get(reliance.held) == reliance.valid_until
            assert reliance.rule in decision.applied


@PROPERTY
@given(cases())
def test_replaying_a_decision_from_its_facts_reproduces_it(case):
    policy, workload, at = case
    for decision in policy.decide_all(workload, at=at).decisions:
        result = replay(decision.facts(), policy)
        assert result.matches, result.differences
        assert result.replayed == decision
