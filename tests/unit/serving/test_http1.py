"""The proxy's keep-alive HTTP/1.1 client against raw servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import socket

import pytest

from serving.routing.errors import UpstreamBroken, UpstreamUnreachable
from serving.routing.http1 import Http1Pool
from serving.routing.upstream import UpstreamPool


async def serve(handler) -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length")), 0)
    return head + await reader.readexactly(length)


def run(coro):
    return asyncio.run(coro)


def test_a_keep_alive_connection_is_reused_and_bodies_pass_unchanged() -> None:
    async def scenario() -> None:
        connections = []

        async def handler(reader, writer):
            connections.append(writer)
            while True:
                try:
                    request = await read_request(reader)
                except asyncio.IncompleteReadError:
                    return
                body = request.split(b"\r\n\r\n", 1)[1]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()

        server, port = await serve(handler)
        pool = Http1Pool()
        pool.start()
        for n in range(3):
            response = await pool.request("POST", "127.0.0.1", port, "/v1/x", b'{"n": %d}' % n,
                                          {"Content-Type": "application/json"})
            assert response.status == 200 and response.content_type == "application/json"
            assert await response.read() == b'{"n": %d}' % n
            response.release()
        assert len(connections) == 1
        pool.close()
        server.close()

    run(scenario())


def test_a_chunked_stream_arrives_chunk_by_chunk() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def handler(reader, writer):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n6\r\ndata 1\r\n")
            await writer.drain()
            await release.wait()
            writer.write(b"6\r\ndata 2\r\n0\r\n\r\n")
            await writer.drain()

        server, port = await serve(handler)
        pool = Http1Pool()
        pool.start()
        response = await pool.request("POST", "127.0.0.1", port, "/", b"{}", {})
        chunks = response.chunks()
        assert await chunks.__anext__() == b"data 1"  # before the rest exists
        release.set()
        assert [c async for c in chunks] == [b"data 2"]
        response.release()
        pool.close()
        server.close()

    run(scenario())


def test_a_connection_the_server_closed_after_answering_is_not_reused() -> None:
    async def scenario() -> None:
        count = 0

        async def handler(reader, writer):
            nonlocal count
            count += 1
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()  # the server drops keep-alive connections after one answer

        server, port = await serve(handler)
        pool = Http1Pool()
        pool.start()
        for _ in range(2):
            response = await pool.request("POST", "127.0.0.1", port, "/", b"{}", {})
            assert await response.read() == b"ok"
            response.release()
        assert count == 2
        pool.close()
        server.close()

    run(scenario())


def test_no_listener_is_unreachable_and_a_body_cut_short_is_broken() -> None:
    async def scenario() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            dead = sock.getsockname()[1]
        pool = Http1Pool()
        pool.start()
        with pytest.raises(UpstreamUnreachable):
            await pool.request("POST", "127.0.0.1", dead, "/", b"{}", {})

        async def handler(reader, writer):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            await writer.drain()
            writer.close()

        server, port = await serve(handler)
        response = await pool.request("POST", "127.0.0.1", port, "/", b"{}", {})
        with pytest.raises(UpstreamBroken):
            await response.read()
        response.release()
        pool.close()
        server.close()

    run(scenario())


def test_a_silent_replica_times_out_before_its_head_as_unreachable() -> None:
    async def scenario() -> None:
        async def handler(reader, writer):
            await read_request(reader)
            await asyncio.sleep(5)

        server, port = await serve(handler)
        pool = Http1Pool(read_timeout=0.2)
        pool.start()
        with pytest.raises(UpstreamUnreachable, match="TimeoutError"):
            await pool.request("POST", "127.0.0.1", port, "/", b"{}", {})
        pool.close()
        server.close()

    run(scenario())


def test_a_body_delimited_by_the_end_of_the_connection_is_complete() -> None:
    async def scenario() -> None:
        async def handler(reader, writer):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
            await writer.drain()
            writer.close()

        server, port = await serve(handler)
        pool = Http1Pool()
        pool.start()
        response = await pool.request("POST", "127.0.0.1", port, "/", b"{}", {})
        assert await response.read() == b"all of it"
        response.release()
        pool.close()
        server.close()

    run(scenario())


def test_the_upstream_pool_uses_it_for_plain_http_only() -> None:
    pool = UpstreamPool()
    assert pool._target("http://10.0.0.7:8000/v1/completions") == ("10.0.0.7", 8000, "/v1/completions")
    assert pool._target("https://peer.example:8100/peer/v1/chat") is None
