"""The examples in the docstrings of the front doors' modules run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["policies.diff", "scheduler.current_policy", "serving.gateway.keys", "serving.models.catalog",
           "serving.deployments_file", "serving.autoscale", "serving.installation.load_reports"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0
