"""Deployment requests: typed, checked when built, with errors that show a correct example."""

from __future__ import annotations

import pytest

from scheduler import Audience, DeploymentSpec, SpecError

BAD = {
    "a name with capitals": (("Chat", "m", [("fr-interior", "DR")]), {}, "name"),
    "no audience": (("chat", "m", []), {}, "at least one"),
    "an unknown marking": (("chat", "m", [("fr-interior", "Top Secret-ish")]), {}, "unknown marking"),
    "an unknown data flag": (("chat", "m", [("fr-health", "PUBLIC", "genetic")]), {}, "unknown data flag"),
    "the same audience twice": (("chat", "m", [("a", "DR"), ("a", "DR")]), {}, "duplicates"),
    "negative replicas": (("chat", "m", [("a", "DR")]), {"replicas": -1}, "replicas"),
    "a boolean replica count": (("chat", "m", [("a", "DR")]), {"replicas": True}, "replicas"),
    "tensor parallel 0": (("chat", "m", [("a", "DR")]), {"tensor_parallel_size": 0}, "tensor_parallel"),
    "fewer GPUs than tensor-parallel ranks": (("chat", "m", [("a", "DR")]),
                                             {"tensor_parallel_size": 2, "gpus_per_replica": 1},
                                             "one GPU per tensor-parallel rank"),
    "a jurisdiction outside FR and DE": (("chat", "m", [("a", "DR")]), {"jurisdiction": "US"}, "'FR' or 'DE'"),
    "a replica config that is not a mapping": (("chat", "m", [("a", "DR")]), {"replica_config": [1]},
                                               "mapping"),
}


@pytest.mark.parametrize("args, kwargs, fragment", BAD.values(), ids=BAD.keys())
def test_bad_requests_fail_when_built(args, kwargs, fragment) -> None:
    with pytest.raises(SpecError, match=fragment) as info:
        DeploymentSpec(*args, **kwargs)
    assert isinstance(info.value, ValueError)


def test_spellings_of_a_marking_make_equal_audiences() -> None:
    assert Audience("fr-interior", "Diffusion Restreinte") == Audience("fr-interior", "DR")
    assert Audience("fr-health", "PUBLIC", "personal,health") == Audience("fr-health", "PUBLIC",
                                                                          ["health", "personal"])


def test_a_spec_reads_well_and_compares_by_value() -> None:
    spec = DeploymentSpec("chat", "corridor-tiny", [("fr-interior", "DR")], replicas=2,
                          tensor_parallel_size=2, pool="fr-paris", replica_config={"max_model_len": 512})
    assert repr(spec) == ("DeploymentSpec('chat', model='corridor-tiny', audiences=[fr-interior/DR], "
                          "replicas=2, gpus_per_replica=2, tensor_parallel_size=2, pool='fr-paris')")
    assert spec == DeploymentSpec("chat", "corridor-tiny", [Audience("fr-interior", "DR")], replicas=2,
                                  tensor_parallel_size=2, pool="fr-paris",
                                  replica_config={"max_model_len": 512})
    assert spec.with_replicas(3).replicas == 3 and spec.with_replicas(3).pool == "fr-paris"
    with pytest.raises(TypeError):
        spec.replica_config["max_model_len"] = 1


def test_each_audience_becomes_one_replica_workload_for_the_rulebook() -> None:
    spec = DeploymentSpec("chat", "corridor-tiny", [("fr-interior", "DR"), ("fr-health", "PUBLIC", "health")],
                          gpus_per_replica=2)
    summaries = [w.summary() for w in spec.workloads()]
    assert summaries == [
        {"kind": "replica", "tenant": "fr-interior", "model": "corridor-tiny", "marking": "DR",
         "data_flags": [], "resources": {"gpus": 2}},
        {"kind": "replica", "tenant": "fr-health", "model": "corridor-tiny", "marking": "PUBLIC",
         "data_flags": ["health"], "resources": {"gpus": 2}},
    ]
