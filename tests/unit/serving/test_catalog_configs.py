"""A site's batch replicas may need a model none of its deployments named: it is resolved when asked."""

from __future__ import annotations

import pytest

from scheduler.current_policy import CurrentPolicy
from serving.installation.adapters import CatalogConfigs
from serving.models.catalog import ModelCatalog


def test_a_model_no_deployment_named_is_resolved_when_a_batch_asks_and_an_unknown_one_is_absent(tmp_path,
                                                                                                 default_policy):
    catalog = ModelCatalog(tmp_path / "models", defaults={"host": "127.0.0.1"})
    configs = CatalogConfigs(catalog, CurrentPolicy(default_policy), prepared={})
    assert list(configs) == []
    minilm = configs["minilm"]  # shipped in its package: resolved now
    assert minilm["task"] == "embedding" and minilm["model_path"].endswith("model")
    assert "minilm" in catalog.digests, "its digest is known to the gateway from now on"
    assert configs.get("no-such-model") is None
    with pytest.raises(KeyError):
        configs["no-such-model"]
