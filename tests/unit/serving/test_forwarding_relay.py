"""The home side's relay of a stream the peer site served: usage charged at home, and hidden
when only the gateway asked for it (as for a stream served at home)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from serving.gateway import forwarding

EVENTS = [b'data: {"choices":[{"index":0,"delta":{"content":"Hallo"}}]}\n\n',
          b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":6,"total_tokens":9}}\n\n',
          b"data: [DONE]\n\n"]


class PeerStream:
    def __init__(self) -> None:
        self.released = False

    async def chunks(self):
        for event in EVENTS:
            yield event

    def release(self) -> None:
        self.released = True


class Tokens:
    def __init__(self) -> None:
        self.charged: list[tuple[str, int | None]] = []

    def charge(self, tenant: str, tokens: int | None) -> None:
        self.charged.append((tenant, tokens))


def relay(hide_usage: bool) -> tuple[list[bytes], PeerStream, Tokens]:
    answer, tokens = PeerStream(), Tokens()

    async def collect() -> list[bytes]:
        return [event async for event in forwarding._relay(answer, SimpleNamespace(tokens=tokens),
                                                            "de-federal-it", hide_usage)]

    return asyncio.run(collect()), answer, tokens


def test_a_usage_event_only_the_gateway_asked_for_is_not_relayed_but_charged_at_home():
    events, answer, tokens = relay(hide_usage=True)
    assert events == [EVENTS[0], EVENTS[2]]
    assert tokens.charged == [("de-federal-it", 9)]
    assert answer.released


def test_a_usage_event_the_client_asked_for_is_relayed():
    events, _, tokens = relay(hide_usage=False)
    assert events == EVENTS
    assert tokens.charged == [("de-federal-it", 9)]
