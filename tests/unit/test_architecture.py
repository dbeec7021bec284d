"""The dependency rules as a contract that fails when someone breaks them.

- ``serving → scheduler → policies`` with no back edge, the rulebook pure, the ledger,
  placement and crisis registry free of Ray and web frameworks, the batch domain free of
  HTTP modules: the import-linter contracts in ``pyproject.toml`` (``[tool.importlinter]``);
- no module imports a private (``_``) name of another module;
- the light entry points stay light in a fresh interpreter;
- a module over ~300 lines says in its docstring why it is one module.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("policies", "scheduler", "serving")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
HEAVY = ("ray", "fastapi", "starlette", "vllm", "torch", "uvicorn")


def product_modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def test_every_import_contract_is_kept():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def test_a_back_edge_from_the_rulebook_to_serving_breaks_the_contract(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.yaml"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    markings = tmp_path / "policies" / "markings.py"
    markings.write_text(markings.read_text("utf-8") + "\nimport serving.gateway  # a back edge\n", "utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "policies.markings -> serving.gateway" in result.stdout
    assert "BROKEN" in result.stdout


def _private_imports(path: Path) -> list[str]:
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                if alias.name.startswith("_") and node.module != module:
                    found.append(f"{module}: from {node.module} import {alias.name}")
    return found


def test_no_module_imports_another_modules_private_names():
    assert [line for path in product_modules() for line in _private_imports(path)] == []


@pytest.mark.parametrize("entry", ["policies", "scheduler.ledger", "scheduler.placement", "scheduler.crisis",
                                   "serving.batch", "serving.feed", "serving.routing"])
def test_a_light_entry_point_loads_no_ray_web_framework_or_vllm(entry):
    code = (f"import sys, {entry}; heavy = {HEAVY!r}; "
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, timeout=120).stdout.strip()
    assert out == "[]", f"import {entry} loaded {out}"


def test_cli_groups_other_than_up_load_no_ray_web_framework_or_vllm():
    code = ("import sys; from serving.cli import COMMANDS, load_command; "
            "[load_command(n) for n in COMMANDS if n != 'up']; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, timeout=120).stdout.strip()
    assert out == "[]", f"the CLI groups loaded {out}"


def test_a_module_over_300_lines_says_why_it_is_one_module():
    long = []
    for path in product_modules():
        lines = path.read_text("utf-8").count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text("utf-8"))) or ""
        if lines > 330 and "one module" not in docstring.lower():
            long.append(f"{path.relative_to(REPO)} ({lines} lines)")
    assert long == [], "split these, or say in the docstring why each is one module"
