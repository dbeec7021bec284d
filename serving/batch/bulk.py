"""Bulk submission: many chat lines of a batch in one request to the replica.

One HTTP request per line costs the replica's API server (and the gateway) far more
than generating a few dozen tokens on a small model; vLLM's
``POST /v1/chat/completions/batch`` takes many conversations with one set of
sampling parameters and answers one choice per conversation. Lines of one batch
whose bodies differ only in ``messages`` (the usual case: one template, many
inputs) are grouped, sent together, and the answer is split back into one
OpenAI chat completion per line.

What a line's answer says when it came in bulk: its own ``choices[0]`` (message,
finish reason, logprobs if asked), the group's ``id`` suffixed with the line's
position, and ``usage: null`` — the replica reports prompt tokens only for the
group as a whole, so a per-line figure would be invented. The line's exact
completion tokens and the group's totals are in ``corridor_usage``; the batch's
own ``usage`` stays exact (the group's totals are counted once).

A bulk request carries the tenant's ``cache_salt`` like a line sent alone
(:mod:`serving.routing.cache_salt`); a salt a line sent is not part of its group
and is replaced.

A line is sent alone when it streams, uses tools, asks for more than one choice
or for beam search (the bulk endpoint refuses those), and every line of a batch
is sent alone once its replica answered a bulk request with 404/405 (an older
server) or a 4xx (one bad line must not fail its neighbours).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

BULK_PATH = "/v1/chat/completions/batch"

#: Fields the bulk endpoint refuses or handles differently; a line using them goes alone.
_ALONE = ("stream", "stream_options", "tools", "functions", "function_call", "use_beam_search",
          "parallel_tool_calls", "return_token_ids")


def group_key(body: str) -> str | None:
    """The line's parameters other than ``messages`` (and ``cache_salt``, which is replaced),
    canonical, when it may share a bulk request; None when it must go alone.

    >>> group_key('{"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}')
    '{"max_tokens":4,"model":"m"}'
    >>> group_key('{"model": "m", "stream": true, "messages": []}') is None
    True
    """
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
        return None
    if any(payload.get(name) not in (None, False) for name in _ALONE):
        return None
    if payload.get("n") not in (None, 1) or payload.get("tool_choice") not in (None, "none"):
        return None
    params = {k: v for k, v in payload.items() if k not in ("messages", "cache_salt")}
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def bulk_body(key: str, bodies: Sequence[str], cache_salt: str) -> bytes:
    """One bulk request for lines sharing ``key``: their conversations, in order, under the
    tenant's ``cache_salt``.

    >>> json.loads(bulk_body('{"model":"m"}', ['{"messages": [1], "cache_salt": "x"}'], "s"))
    {'model': 'm', 'messages': [[1]], 'return_token_ids': True, 'cache_salt': 's'}
    """
    request = json.loads(key)
    request["messages"] = [json.loads(body)["messages"] for body in bodies]
    request["return_token_ids"] = True  # each line's exact completion token count
    request["cache_salt"] = cache_salt
    return json.dumps(request, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class LineAnswer:
    """One line's share of a bulk answer: its chat completion body and its completion tokens."""

    body: bytes
    completion_tokens: int


def split_answer(content: bytes, lines: int) -> list[LineAnswer] | None:
    """Split a bulk answer into one chat completion per line; None when it does not have
    exactly one choice per line (the caller then sends the lines alone).

    >>> answer = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 5,
    ...     "model": "m", "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    ...     "choices": [{"index": 1, "message": {"role": "assistant", "content": "b"},
    ...                  "finish_reason": "length", "token_ids": [7]},
    ...                 {"index": 0, "message": {"role": "assistant", "content": "a"},
    ...                  "finish_reason": "stop", "token_ids": [4, 2]}]}).encode()
    >>> [json.loads(a.body)["choices"][0]["message"]["content"] for a in split_answer(answer, 2)]
    ['a', 'b']
    >>> json.loads(split_answer(answer, 2)[1].body)["corridor_usage"]
    {'completion_tokens': 1, 'group': {'lines': 2, 'prompt_tokens': 9, 'completion_tokens': 3}}
    """
    try:
        answer: dict[str, Any] = json.loads(content)
    except ValueError:
        return None
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or len(choices) != lines:
        return None
    by_index = {c.get("index"): c for c in choices if isinstance(c, dict)}
    if sorted(by_index) != list(range(lines)):
        return None
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    group = {"lines": lines, "prompt_tokens": usage.get("prompt_tokens"),
             "completion_tokens": usage.get("completion_tokens")}
    common = {k: v for k, v in answer.items() if k not in ("choices", "usage", "id")}
    out = []
    for index in range(lines):
        choice = dict(by_index[index])
        tokens = choice.pop("token_ids", None)
        completion = len(tokens) if isinstance(tokens, list) else 0
        choice["index"] = 0
        body = {"id": f"{answer.get('id', 'chatcmpl')}-{index}", **common, "choices": [choice],
                "usage": None, "corridor_usage": {"completion_tokens": completion, "group": group}}
        out.append(LineAnswer(json.dumps(body, ensure_ascii=False).encode("utf-8"), completion))
    return out
