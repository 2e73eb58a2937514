"""The gateway's asyncio RPC client (gateway/amqp_rpc.py) against the real broker and
services: nameko's protocol, typed errors, timeouts, and a broker that goes away."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import pytest
from nameko.exceptions import MethodNotFound

from common.context import CallContext
from common.errors import NotFound
from gateway.amqp_rpc import AsyncRpcClient, amqp_url
from gateway.rpc import ServiceTimeout, ServiceUnavailable
from tests.harness import amqp_uri
from tests.tcp_proxy import TcpProxy

UNKNOWN_PRODUCT = "00000000-0000-4000-8000-000000000000"


def with_client(
    uri: str, test: Callable[[AsyncRpcClient], Awaitable[Any]], timeout: float = 5
) -> Any:
    async def run() -> Any:
        client = AsyncRpcClient(uri, timeout)
        await client.start()
        try:
            return await test(client)
        finally:
            await client.close()

    return asyncio.run(run())


def test_kombu_uris_become_aio_pika_urls():
    assert amqp_url("pyamqp://guest:guest@127.0.0.1:5672//").startswith(
        "amqp://guest:guest@127.0.0.1:5672//?heartbeat="
    )
    assert amqp_url("amqp://u:p@h:1/vhost?ssl=1").startswith("amqp://u:p@h:1/vhost?ssl=1&")


def test_answers_and_typed_errors_cross_the_wire(platform):
    async def test(client: AsyncRpcClient) -> None:
        assert (await client.call("catalog", "ping", context=CallContext()))["status"] == "ok"
        with pytest.raises(NotFound):
            await client.call(
                "catalog", "get_product", UNKNOWN_PRODUCT, context=CallContext(correlation_id="c")
            )
        with pytest.raises(MethodNotFound):
            await client.call("catalog", "no_such_method", context=CallContext())

    with_client(platform.amqp_uri, test)


def test_unknown_service_is_unavailable_at_once(platform):
    async def test(client: AsyncRpcClient) -> None:
        with pytest.raises(ServiceUnavailable, match="not running"):
            await client.call("no_such_service", "ping", context=CallContext())

    with_client(platform.amqp_uri, test)


def test_many_concurrent_calls_share_one_connection(platform):
    async def test(client: AsyncRpcClient) -> list[str]:
        answers = await asyncio.gather(
            *(client.call("catalog", "ping", context=CallContext()) for _ in range(50))
        )
        return [answer["status"] for answer in answers]

    # A generous timeout: the point is many calls on one connection, not speed.
    assert with_client(platform.amqp_uri, test, timeout=60) == ["ok"] * 50


def test_ping_all_reports_each_service(platform):
    async def test(client: AsyncRpcClient) -> dict[str, str]:
        return await client.ping_all(["auth", "catalog", "ghost"], CallContext(), timeout=3)

    assert with_client(platform.amqp_uri, test) == {
        "auth": "ok",
        "catalog": "ok",
        "ghost": "not running",
    }


def test_unreachable_broker_is_unavailable():
    async def test(client: AsyncRpcClient) -> None:
        with pytest.raises(ServiceUnavailable, match="broker"):
            await client.call("catalog", "ping", context=CallContext())

    with_client("pyamqp://guest:guest@127.0.0.1:1//", test, timeout=2)


def test_a_hung_service_times_out_and_its_late_answer_is_ignored(platform):
    catalog = platform.processes["catalog"].process

    async def test(client: AsyncRpcClient) -> str:
        os.kill(catalog.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ServiceTimeout):
                await client.call("catalog", "ping", context=CallContext(), timeout=0.5)
        finally:
            os.kill(catalog.pid, signal.SIGCONT)
        return (await client.call("catalog", "ping", context=CallContext()))["status"]

    # After SIGCONT the service first works through what queued up meanwhile.
    assert with_client(platform.amqp_uri, test, timeout=60) == "ok"


def test_a_lost_broker_fails_calls_fast_and_the_client_reconnects(platform):
    vhost = platform.amqp_uri.rsplit("/", 1)[1]
    proxy = TcpProxy(5672)

    deadline = 30.0

    async def test(client: AsyncRpcClient) -> None:
        assert (await client.call("catalog", "ping", context=CallContext()))["status"] == "ok"
        proxy.cut()
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            await client.call("catalog", "ping", context=CallContext(), timeout=deadline)
        # The behaviour under test is the deadline: a lost broker is noticed, not waited
        # for (ServiceUnavailable, not ServiceTimeout), well before the call's deadline.
        assert time.monotonic() - started < deadline / 2
        proxy.restore()

        async def answers() -> None:
            assert (await client.call("catalog", "ping", context=CallContext()))["status"] == "ok"

        await eventually_async(answers)

    try:
        with_client(amqp_uri(vhost=unquote(vhost), port=proxy.port), test)
    finally:
        proxy.close()


async def eventually_async(check: Callable[[], Awaitable[None]], timeout: float = 20) -> None:
    """``tests.support.eventually`` for coroutines."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await check()
            return
        except (AssertionError, ServiceUnavailable):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_a_channel_closed_under_a_publish_is_503_not_500():
    """When the connection dies between the check and the publish, aio-pika raises
    aiormq's ChannelInvalidStateError (a RuntimeError): still "the broker is unreachable".
    (A stand-in exchange and connection: the moment cannot be timed with a real broker.)"""
    import aiormq

    class ClosedUnderUs:
        is_closed = False

        async def publish(self, *args: Any, **kwargs: Any) -> None:
            raise aiormq.exceptions.ChannelInvalidStateError("channel closed")

    async def scenario() -> None:
        client = AsyncRpcClient(amqp_uri(port=1), timeout=2)
        client._loop = asyncio.get_running_loop()
        client._connection = client._exchange = ClosedUnderUs()
        client._closed = True  # no reconnecting in the background
        with pytest.raises(ServiceUnavailable, match="unreachable"):
            await client.call("catalog", "list_products", context=CallContext())
        assert client._exchange is None and client._pending == {}

    asyncio.run(scenario())
