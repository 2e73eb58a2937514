"""The gateway's RPC client against the real broker and services."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from nameko.exceptions import MethodNotFound

from common.context import CallContext
from common.errors import NotFound
from gateway.rpc import RpcClient, ServiceTimeout, ServiceUnavailable
from tests.support import frozen


@pytest.fixture
def client(platform):
    rpc = RpcClient(platform.amqp_uri, timeout=5)
    yield rpc
    rpc.close()


def test_typed_errors_cross_the_wire(client):
    with pytest.raises(NotFound):
        client.call(
            "catalog",
            "get_product",
            "00000000-0000-4000-8000-000000000000",
            context=CallContext(correlation_id="c-1"),
        )


def test_unknown_service_is_unavailable_at_once(client):
    with pytest.raises(ServiceUnavailable, match="not running"):
        client.call("no_such_service", "ping", context=CallContext())


def test_unknown_method_is_an_error_not_a_hang(client):
    with pytest.raises(MethodNotFound):
        client.call("catalog", "no_such_method", context=CallContext(), timeout=5)


def test_unreachable_broker_is_unavailable():
    rpc = RpcClient("pyamqp://guest:guest@127.0.0.1:1//", timeout=2)
    with pytest.raises(ServiceUnavailable, match="broker"):
        rpc.call("catalog", "ping", context=CallContext())


def test_ping_reports_the_outbox_backlog(client):
    answer = client.call("catalog", "ping", context=CallContext())
    assert answer["status"] == "ok"
    assert answer["outbox_backlog"] == 0


def test_ping_all_reports_each_service(client):
    outcomes = client.ping_all(["auth", "catalog", "ghost"], CallContext(), timeout=3)
    assert outcomes == {"auth": "ok", "catalog": "ok", "ghost": "not running"}


def test_threads_each_get_their_own_proxy(client):
    def work(_: int) -> list[str]:
        return [client.call("catalog", "ping", context=CallContext())["status"] for _ in range(20)]

    with ThreadPoolExecutor(6) as pool:
        results = [status for statuses in pool.map(work, range(6)) for status in statuses]
    assert results == ["ok"] * 120


def test_timeout_is_504_material(platform, client):

    with frozen(platform.processes["catalog"]), pytest.raises(ServiceTimeout):
        client.call("catalog", "ping", context=CallContext(), timeout=1)
    assert client.call("catalog", "ping", context=CallContext())["status"] == "ok"
