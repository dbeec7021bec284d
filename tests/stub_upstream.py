"""A minimal OpenAI-compatible upstream that answers instantly (no model).

For measuring the gateway's own cost at high request rates and for the
gateway's unit tests: it answers ``/v1/chat/completions`` (also streaming, with a usage event when asked),
``/v1/completions``, ``/v1/embeddings`` and vLLM's bulk ``/v1/chat/completions/batch``
(one choice per conversation) with fixed bodies that name the
stub (``system_fingerprint``), so a test can tell which upstream answered.
A raw ASGI app, so the stub itself costs as little as possible.

Run alone: ``python tests/stub_upstream.py --port 8101 --name fr-paris``. A test helper: it lives
with the tests, and the gateway benchmark runs it as a script.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import threading
import time
from typing import Any

import uvicorn


def make_stub(name: str, *, fail: bool = False, chunks: int = 4, bulk: bool = True):
    """An ASGI app answering as upstream ``name``; ``fail`` makes it answer 500; ``bulk`` False
    answers the bulk endpoint 404 (an older server)."""
    chat = json.dumps({
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub",
        "system_fingerprint": name,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": f"hello from {name}"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }).encode()
    completion = json.dumps({
        "id": "cmpl-stub", "object": "text_completion", "created": 0, "model": "stub",
        "system_fingerprint": name,
        "choices": [{"index": 0, "text": f"hello from {name}", "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }).encode()
    embedding = json.dumps({
        "object": "list", "model": "stub",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }).encode()
    events = [json.dumps({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0,
                          "model": "stub", "system_fingerprint": name,
                          "choices": [{"index": 0, "delta": {"content": f"tok{i} "},
                                       "finish_reason": None}]}) for i in range(chunks)]
    stream = [f"data: {e}\n\n".encode() for e in events]
    usage = json.dumps({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0,
                        "model": "stub", "system_fingerprint": name, "choices": [],
                        "usage": {"prompt_tokens": 3, "completion_tokens": chunks,
                                  "total_tokens": 3 + chunks}})
    bodies = {"/v1/chat/completions": chat, "/v1/completions": completion, "/v1/embeddings": embedding}

    async def app(scope: dict[str, Any], receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if fail:
            await _send(send, 500, b'{"error": {"message": "stub failure"}}')
        elif path == "/health":
            await _send(send, 200, b"")
        elif path == "/v1/chat/completions" and _wants_stream(body):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            tail = [f"data: {usage}\n\n".encode()] if _wants_usage(body) else []
            for chunk in stream + tail + [b"data: [DONE]\n\n"]:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path in bodies:
            await _send(send, 200, bodies[path])
        elif path == "/v1/chat/completions/batch" and bulk:
            await _send(send, 200, _bulk_answer(name, body))
        else:
            await _send(send, 404, b'{"error": {"message": "not found"}}')

    return app


def _wants_usage(body: bytes) -> bool:
    """``stream_options.include_usage``, as vLLM reads it: a usage-only event ends the stream."""
    try:
        return json.loads(body).get("stream_options", {}).get("include_usage") is True
    except (ValueError, AttributeError):
        return False


_BULK_IDS = itertools.count()


def _bulk_answer(name: str, body: bytes) -> bytes:
    conversations = json.loads(body)["messages"]
    return json.dumps({
        "id": f"chatcmpl-stub-{next(_BULK_IDS)}", "object": "chat.completion", "created": 0, "model": "stub",
        "system_fingerprint": name,
        "choices": [{"index": i, "finish_reason": "stop", "token_ids": [1, 2, 3],
                     "message": {"role": "assistant", "content": f"hello from {name}"}}
                    for i in range(len(conversations))],
        "usage": {"prompt_tokens": 3 * len(conversations), "completion_tokens": 3 * len(conversations),
                  "total_tokens": 6 * len(conversations)},
    }).encode()


def _wants_stream(body: bytes) -> bool:
    try:
        return json.loads(body).get("stream") is True
    except (ValueError, AttributeError):
        return False


async def _send(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def bound_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound now, so its port is held until a server listens on it.

    A port number picked early and bound later can meanwhile become the local end of some
    outgoing connection (they share the ephemeral range); binding at once closes that race.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class ServerThread:
    """Serve an ASGI app with uvicorn in a background thread on a free loopback port."""

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, ssl_context=None,
                 lifespan: str = "on", sock: socket.socket | None = None) -> None:
        self.sock = sock or bound_socket(host, port)
        self.host, self.port = self.sock.getsockname()
        options = {} if ssl_context is None else {
            "ssl_context_factory": lambda config, default: ssl_context}
        self.scheme = "http" if ssl_context is None else "https"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                                    lifespan=lifespan, **options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="A minimal OpenAI-compatible stub upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--name", default="stub")
    args = parser.parse_args()
    uvicorn.run(make_stub(args.name), host=args.host, port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
