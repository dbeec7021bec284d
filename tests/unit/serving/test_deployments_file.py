"""The deployments file is validated as strictly as a bundle: every problem, with file, path and
what is wrong; nothing unknown is ever ignored."""

from __future__ import annotations

import pytest

from policies import Policy
from serving.deployments_file import (DeploymentsFileError, default_deployments_path, load_deployments)
from serving.models.catalog import engine_arguments

GOOD = """\
deployments:
  - name: interior-small
    model: corridor-small
    audiences:
      - {tenant: fr-interior, marking: DR}
      - {tenant: fr-interior, marking: Diffusion Restreinte, data_flags: [personal]}
    replicas: {min: 1, max: 3, target_outstanding: 2}
    tensor_parallel_size: 1
    jurisdiction: FR
    pool: fr-paris
    engine_args: {max_model_len: 256, enforce_eager: true}
"""

ENTRY = "deployments:\n  - name: d\n    model: corridor-tiny\n    audiences: [{tenant: fr-interior, marking: DR}]\n"


def problems(text: str) -> list[str]:
    with pytest.raises(DeploymentsFileError) as info:
        load_deployments("mine.yaml", Policy.load(), text=text)
    return [str(issue) for issue in info.value.issues]


def test_the_demo_set_shipped_with_corridor_up_is_valid():
    loaded = load_deployments(default_deployments_path(), Policy.load())
    assert [d.name for d in loaded.deployments] == ["chat-fr", "chat-de", "embeddings"]


def test_a_full_entry_reads_back_as_declared():
    (decl,) = load_deployments("mine.yaml", Policy.load(), text=GOOD).deployments
    assert (decl.initial_replicas, decl.most_replicas, decl.gpus()) == (1, 3, 3)
    assert decl.replicas.target_outstanding == 2
    spec = decl.to_spec(2, {"model_path": "/m"}, None)
    assert spec.jurisdiction == "FR" and spec.pool == "fr-paris" and spec.replicas == 2
    assert [str(a) for a in spec.audiences] == ["fr-interior/DR", "fr-interior/DR+personal"]


@pytest.mark.parametrize(("text", "expected"), [
    (ENTRY + "    replica: 2\n",
     "mine.yaml: deployments[0].replica: unknown field (not allowed here; check its spelling)"),
    (ENTRY.replace("marking: DR}", "marking: DR, flags: [health]}"),
     "mine.yaml: deployments[0].audiences[0].flags: unknown field"),
    (ENTRY + "    replicas: {min: 1, max: 2, targett: 3}\n",
     "mine.yaml: deployments[0].replicas.targett: unknown field"),
    (ENTRY + "    replicas: '2'\n", "mine.yaml: deployments[0].replicas: Input should be a valid integer"),
    (ENTRY + "    replicas: -1\n", "mine.yaml: deployments[0]: Value error, replicas: got -1"),
    (ENTRY + "    replicas: {min: 3, max: 1}\n", "mine.yaml: deployments[0].replicas: Value error, max (1) is below min (3)"),
    (ENTRY + "    replicas: {min: 0, max: 1}\n", "mine.yaml: deployments[0].replicas.min: Input should be greater than or equal to 1"),
    (ENTRY + "    tensor_parallel_size: 0\n", "mine.yaml: deployments[0].tensor_parallel_size: Input should be greater than or equal to 1"),
    (ENTRY + "    jurisdiction: US\n", "mine.yaml: deployments[0].jurisdiction: Input should be 'FR' or 'DE'"),
    (ENTRY.replace("name: d", "name: Big Name"), "mine.yaml: deployments[0].name: String should match pattern"),
    (ENTRY.replace("    model: corridor-tiny\n", ""), "mine.yaml: deployments[0].model: required field is missing"),
    (ENTRY.replace("corridor-tiny", "gpt-5"), "mine.yaml: deployments[0].model: unknown model 'gpt-5'; known: corridor-small, corridor-tiny, minilm"),
    (ENTRY.replace("tenant: fr-interior", "tenant: fr-interiour"), "mine.yaml: deployments[0].audiences[0].tenant: unknown tenant 'fr-interiour'"),
    (ENTRY.replace("marking: DR", "marking: TOP"), "mine.yaml: deployments[0].audiences[0].marking: unknown marking 'TOP'"),
    (ENTRY + "    pool: us-east\n", "mine.yaml: deployments[0].pool: unknown pool 'us-east'"),
    (ENTRY + "    pool: de-berlin\n    jurisdiction: FR\n", "mine.yaml: deployments[0].pool: pool de-berlin is in DE, not in the jurisdiction FR"),
    (ENTRY + "    engine_args: {port: 9000}\n", "mine.yaml: deployments[0]: Value error, engine_args.port: set by Corridor itself"),
    (ENTRY + "    engine_args: {'--max model': 1}\n", "mine.yaml: deployments[0]: Value error, engine_args.--max model: want a vLLM argument name"),
    (ENTRY.replace("audiences: [{tenant: fr-interior, marking: DR}]", "audiences: [{tenant: fr-interior, marking: DR}, {tenant: fr-interior, marking: Diffusion Restreinte}]"),
     "mine.yaml: deployments[0]: Value error, audiences: an audience is listed twice"),
    (ENTRY.replace("audiences: [{tenant: fr-interior, marking: DR}]", "audiences: []"), "mine.yaml: deployments[0].audiences: List should have at least 1 item"),
    (ENTRY + ENTRY.split("\n", 1)[1], "mine.yaml: deployments[1].name: duplicate name 'd'"),
    (ENTRY + "    model: minilm\n", "mine.yaml: line 5, column 5: YAML error: found duplicate key 'model'"),
    ("deployments: [\n", "mine.yaml: line 2, column 1: YAML error"),
    ("", "mine.yaml: expected a mapping at the top level, got an empty file"),
    ("- name: d\n", "mine.yaml: expected a mapping at the top level, got list"),
    ("deployment: []\n", "mine.yaml: deployment: unknown field"),
], ids=[
    "a misspelled field of a deployment", "a misspelled field of an audience",
    "a misspelled field of the replica range", "a count given as a string", "a negative count",
    "a range whose max is below its min", "a range that may reach zero", "no tensor-parallel rank",
    "a jurisdiction that is neither FR nor DE", "a name that is not an identifier", "no model",
    "a model the bundle does not know", "a tenant the bundle does not know", "an unknown marking",
    "a pool the bundle does not know", "a pool outside the named jurisdiction",
    "an engine argument Corridor sets itself", "an engine argument that is not a name",
    "an audience listed twice under two spellings", "no audience", "two deployments of one name",
    "a duplicate key", "broken YAML", "an empty file", "a list at the top level",
    "a misspelled top-level key"])
def test_every_bad_input_is_an_error_naming_file_path_and_problem(text, expected):
    assert any(p.startswith(expected) for p in problems(text)), problems(text)


def test_every_problem_is_reported_at_once():
    text = ENTRY.replace("corridor-tiny", "gpt-5").replace("tenant: fr-interior", "tenant: nobody")
    found = problems(text)
    assert len(found) == 2 and "model" in found[0] and "tenant" in found[1]


def test_engine_arguments_become_vllm_flags():
    assert engine_arguments({"max_model_len": 512, "enforce_eager": True, "disable_log_requests": False,
                             "override_generation_config": {"temperature": 0}}) == [
        "--max-model-len", "512", "--enforce-eager", "--override-generation-config",
        '{"temperature": 0}']
