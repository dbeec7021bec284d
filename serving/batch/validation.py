"""Validating a batch's input file before any line runs: all lines good, or the batch fails.

Each non-blank line must be a JSON object (nested at most
:data:`serving.bounded_json.MAX_DEPTH` levels) ``{"custom_id", "method": "POST",
"url", "body"}`` with a ``custom_id`` unique in the file, the batch's
endpoint as ``url``, and a ``body`` naming a model that serves that endpoint
and that the rulebook lets the tenant use with the batch's marking. One
batch runs one model (as on OpenAI). Violations are reported per line
(1-based line numbers), at most ``max_errors`` of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from policies.spillage import request_texts, spillage_reason
from policies import Evaluation, Policy, Workload
from serving.batch.records import ENDPOINTS, BatchError
from serving.bounded_json import JsonRejected, loads_bounded

_LINE_KEYS = frozenset({"custom_id", "method", "url", "body"})
_MODEL_RULES = frozenset({"model-allowed", "model-pinned"})
_ENDPOINT_TASK = {"/v1/chat/completions": "chat", "/v1/completions": "chat",
                  "/v1/embeddings": "embedding"}


@dataclass(frozen=True, slots=True)
class InputLimits:
    """How large an input may be: lines, bytes per line, and errors reported."""

    max_lines: int = 50_000
    max_line_bytes: int = 8 * 1024 * 1024
    max_errors: int = 100

    def __post_init__(self) -> None:
        for name in ("max_lines", "max_line_bytes", "max_errors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}, want an integer >= 1, "
                                 f"e.g. InputLimits(max_lines=50_000)")


@dataclass(slots=True)
class ValidatedInput:
    """The outcome: the lines to run ``(line, custom_id, body JSON)`` and the model, or errors.

    ``refusal`` is the rulebook's evaluation when it refused the model (for the ledger).
    """

    lines: list[tuple[int, str, str]] = field(default_factory=list)
    model: str | None = None
    errors: list[BatchError] = field(default_factory=list)
    refusal: Evaluation | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


class _Errors:
    def __init__(self, limit: int) -> None:
        self.items: list[BatchError] = []
        self.dropped = 0
        self.limit = limit

    def add(self, code: str, message: str, line: int | None = None, param: str | None = None) -> None:
        if len(self.items) < self.limit:
            self.items.append(BatchError(code, message, line, param))
        else:
            self.dropped += 1

    def result(self) -> list[BatchError]:
        if self.dropped:
            return [*self.items, BatchError("too_many_errors",
                                            f"{self.dropped} more errors not listed")]
        return self.items


def validate_input(raw_lines: Iterable[bytes], *, endpoint: str, workload: Workload, policy: Policy,
                   evaluate: Callable[[Workload], Evaluation],
                   limits: InputLimits = InputLimits()) -> ValidatedInput:
    """Check every line of an input file (an iterable of raw lines, e.g. an open binary file).

    ``workload`` is the batch's workload without a model; ``evaluate`` asks
    the rulebook (the gateway router's cached ``decide_all``).
    """
    field_name = ENDPOINTS[endpoint]
    errors = _Errors(limits.max_errors)
    out = ValidatedInput()
    seen: set[str] = set()
    model_verdict: dict[str, tuple[str, str] | None] = {}
    count = 0
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        count += 1
        if count > limits.max_lines:
            errors.add("too_many_lines", f"the file has more than {limits.max_lines} requests; "
                       f"split it into several batches", line=number)
            break
        if len(raw) > limits.max_line_bytes:
            errors.add("line_too_large", f"the request is {len(raw)} bytes, over the limit of "
                       f"{limits.max_line_bytes}", line=number)
            continue
        try:
            item = loads_bounded(raw)
        except JsonRejected as exc:
            errors.add("invalid_json_line", f"not acceptable JSON: {exc}", line=number)
            continue
        if not isinstance(item, dict):
            errors.add("invalid_json_line", f"want a JSON object, got {type(item).__name__}",
                       line=number)
            continue
        for key in sorted(set(item) - _LINE_KEYS):
            errors.add("unknown_parameter", f"unknown field '{key}'; a line has custom_id, "
                       f"method, url and body", line=number, param=key)
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            errors.add("invalid_custom_id", "custom_id must be a non-empty string", line=number,
                       param="custom_id")
            custom_id = None
        elif custom_id in seen:
            errors.add("duplicate_custom_id", f"custom_id '{custom_id}' appears more than once",
                       line=number, param="custom_id")
        else:
            seen.add(custom_id)
        if item.get("method") != "POST":
            errors.add("invalid_method", f"method must be 'POST', got {item.get('method')!r}",
                       line=number, param="method")
        if item.get("url") != endpoint:
            errors.add("mismatched_endpoint", f"url {item.get('url')!r} differs from the batch's "
                       f"endpoint '{endpoint}'", line=number, param="url")
        body = item.get("body")
        if not isinstance(body, dict):
            errors.add("invalid_body", "body must be a JSON object", line=number, param="body")
            continue
        if field_name not in body:
            errors.add("missing_required_parameter", f"body lacks '{field_name}', required by "
                       f"{endpoint}", line=number, param=f"body.{field_name}")
        if body.get("stream") is True:
            errors.add("stream_not_supported", "streaming is not available in batches",
                       line=number, param="body.stream")
        spilled = spillage_reason(workload.marking, *request_texts(body))
        if spilled is not None:
            errors.add("marking_spillage", f"{spilled.code} ({spilled.rule}): {spilled.message}",
                       line=number, param=f"body.{field_name}")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            errors.add("missing_model", "body.model must name a model", line=number,
                       param="body.model")
            continue
        if out.model is None:
            out.model = model
        elif model != out.model:
            errors.add("mismatched_model", f"model '{model}' differs from '{out.model}' of "
                       f"line 1; a batch runs one model", line=number, param="body.model")
            continue
        if model not in model_verdict:
            model_verdict[model] = _judge_model(model, endpoint, workload, policy, evaluate, out)
        verdict = model_verdict[model]
        if verdict is not None:
            errors.add(verdict[0], verdict[1], line=number, param="body.model")
            continue
        if custom_id is not None:
            out.lines.append((number, custom_id,
                              json.dumps(body, ensure_ascii=False, separators=(",", ":"))))
    if count == 0:
        errors.add("empty_file", "the input file has no requests")
    out.errors = errors.result()
    if out.errors:
        out.lines = []
    return out


def _judge_model(model: str, endpoint: str, workload: Workload, policy: Policy,
                 evaluate: Callable[[Workload], Evaluation],
                 out: ValidatedInput) -> tuple[str, str] | None:
    """None if the tenant may run ``model`` on ``endpoint``, else ``(code, message)``."""
    known = policy.models.get(model)
    if known is None:
        return "model_not_found", f"the model '{model}' does not exist"
    if known.task != _ENDPOINT_TASK[endpoint]:
        return ("model_endpoint_mismatch",
                f"the model '{model}' is a {known.task} model; it does not serve {endpoint}")
    evaluation = evaluate(Workload(tenant=workload.tenant, marking=workload.marking, kind="batch",
                                   data_flags=workload.data_flags, model=model))
    if evaluation.allowed:
        return None
    out.refusal = evaluation
    own = any(rule in _MODEL_RULES for rule in evaluation.rules())
    code = "model_not_allowed" if own else "policy_denied"
    return code, evaluation.refusal(_MODEL_RULES)
