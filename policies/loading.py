"""Load YAML files into strict pydantic models, with errors that name file, path and problem.

YAML is parsed with duplicate keys refused (a second ``residency:`` must not
silently win), then validated in pydantic's strict JSON mode: no silent
coercion (``"2"`` is not an integer, ``yes`` is not a string), unknown fields
refused by the models themselves (``extra="forbid"``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from policies.exceptions import BundleError, BundleIssue

M = TypeVar("M", bound=BaseModel)


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _json_default(value: Any) -> str:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"unsupported YAML value of type {type(value).__name__}")


def format_location(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a path.

    >>> format_location(("pools", 2, "accreditations", 0, "valid_until"))
    'pools[2].accreditations[0].valid_until'
    """
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def issues_from_validation(error: ValidationError, file: str) -> list[BundleIssue]:
    """One :class:`BundleIssue` per pydantic error, worded for a person editing YAML."""
    issues = []
    for item in error.errors(include_url=False):
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field (not allowed here; check its spelling)"
        elif item["type"] == "missing":
            message = "required field is missing"
        elif "input" in item and item["type"] not in ("value_error", "assertion_error"):
            message = f"{message} (got {item['input']!r})"
        issues.append(BundleIssue(file, format_location(item["loc"]), message))
    return issues


def parse_yaml(text: str, file: str) -> Any:
    """Parse YAML text; a syntax error or a duplicate key becomes a :class:`BundleError`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BundleError([BundleIssue(file, where, f"YAML error: {exc.problem}")]) from exc
    except yaml.YAMLError as exc:
        raise BundleError([BundleIssue(file, "", f"YAML error: {exc}")]) from exc


def validate_document(document: Any, model: type[M], file: str) -> M:
    """Validate a parsed document against ``model`` in strict JSON mode."""
    if not isinstance(document, dict):
        got = "an empty file" if document is None else type(document).__name__
        raise BundleError([BundleIssue(file, "", f"expected a mapping at the top level, got {got}")])
    try:
        payload = json.dumps(document, default=_json_default)
        return model.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        raise BundleError(issues_from_validation(exc, file)) from exc
    except TypeError as exc:
        raise BundleError([BundleIssue(file, "", str(exc))]) from exc


def load_yaml_model(source: str | Path, model: type[M], *, text: str | None = None) -> M:
    """Read ``source`` (or the given ``text`` under that name) into ``model``."""
    file = str(source)
    if text is None:
        try:
            text = Path(source).read_text("utf-8")
        except OSError as exc:
            raise BundleError([BundleIssue(file, "", f"cannot read file: {exc.strerror}")]) from exc
    return validate_document(parse_yaml(text, file), model, file)
