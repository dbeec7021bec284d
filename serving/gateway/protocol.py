"""The request bodies of the OpenAI-compatible API, as the gateway checks and documents them.

The gateway checks the fields it relies on (``model`` and the endpoint's input)
and their types, strictly (no coercion: ``"stream": "true"`` is a 400); every
other field passes through unchanged to vLLM, which owns their meaning. The same
models give the OpenAPI schema its request bodies (:mod:`serving.gateway.openapi`),
so what is documented is what is checked. Called by the inference routes once the
body was read as a JSON object (:func:`serving.gateway.requests.read_object`).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.gateway.errors import BadRequest

class _Open(BaseModel):
    """A wire object whose unknown fields are kept (and forwarded)."""

    model_config = ConfigDict(extra="allow", strict=True)


class ChatMessage(_Open):
    """One message; ``content`` is text, a list of content parts, or null (tool calls)."""

    role: str = Field(min_length=1, description="system, user, assistant, tool, …")
    content: str | list[dict[str, Any]] | None = Field(default=None)


class StreamOptions(_Open):
    """Streaming options; the gateway sets ``include_usage`` to count tokens, and relays the
    usage event only to a caller who asked for it."""

    include_usage: bool | None = None


class _Inference(_Open):
    model: str = Field(description="A model the caller's tenant may use (GET /v1/models).")
    cache_salt: str | None = Field(
        default=None, description="Replaced by the gateway with the tenant's own salt, so no "
        "tenant's cached prompt prefixes ever serve another tenant.")


class ChatCompletionRequest(_Inference):
    """``POST /v1/chat/completions``; other OpenAI and vLLM fields pass through unchanged."""

    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    stream: bool | None = Field(default=None, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None


class CompletionRequest(_Inference):
    """``POST /v1/completions``; other OpenAI and vLLM fields pass through unchanged."""

    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text, texts, or token ids.")
    stream: bool | None = Field(default=None, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None


class EmbeddingRequest(_Inference):
    """``POST /v1/embeddings``; other OpenAI and vLLM fields pass through unchanged."""

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text, texts, or token ids.")
    encoding_format: Literal["float", "base64"] | None = None


class ErrorDetail(BaseModel):
    """What went wrong, in OpenAI's words; ``message`` names the rule(s) of a refusal."""

    message: str
    type: str
    code: str | None
    param: str | None


class ErrorResponse(BaseModel):
    """Every error the gateway answers: ``{"error": {"message", "type", "code", "param"}}``."""

    error: ErrorDetail


_Model = TypeVar("_Model", bound=BaseModel)


def check_body(model: type[_Model], payload: dict[str, Any]) -> _Model:
    """``payload`` checked against ``model``, or a 400 naming the first parameter at fault; an
    unknown top-level field names the fields the body takes (``unknown_parameter``)."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = [str(part) for part in first.get("loc", ())]
        param = ".".join(location) or None
        kind = first.get("type") if len(location) == 1 else None
        if kind == "extra_forbidden":
            name = location[0][:64]
            raise BadRequest(f"unknown parameter '{name}'; this body takes "
                             f"{', '.join(model.model_fields)}", code="unknown_parameter",
                             param=name) from None
        if kind == "missing":
            raise BadRequest(f"missing required parameter '{param}'",
                             code="missing_required_parameter", param=param) from None
        raise BadRequest(f"invalid parameter '{param}': {first.get('msg', 'invalid value')}",
                         code="invalid_type", param=param) from None
