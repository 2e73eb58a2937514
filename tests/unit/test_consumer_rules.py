"""Which handler failures are retried, and the dead-letter routing (no broker needed)."""

from __future__ import annotations

import sqlalchemy.exc
from nameko.exceptions import RpcTimeout

from common import deadletters
from common.consumers import PoisonMessage, is_transient
from common.errors import DependencyUnavailable, InvalidInput


def test_transient_errors_are_the_ones_waiting_can_cure():
    assert is_transient(sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("gone")))
    assert is_transient(ConnectionResetError())
    # another service slow or its circuit open: worth retrying, for every consumer
    assert is_transient(DependencyUnavailable("catalog did not answer in time."))
    assert is_transient(RpcTimeout())
    lost = sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("x"), connection_invalidated=True)
    assert is_transient(lost)
    for error in (
        InvalidInput("bad"),
        PoisonMessage("not an envelope"),
        KeyError("id"),
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate")),
    ):
        assert not is_transient(error), error


def test_a_handler_queue_dead_letters_to_its_own_parking_queue():
    arguments = deadletters.dead_letter_arguments("evt-a-b--c.d")
    parked = deadletters.parking_queue("evt-a-b--c.d")
    assert arguments["x-dead-letter-exchange"] == parked.exchange.name
    assert arguments["x-dead-letter-routing-key"] == parked.routing_key == parked.name
    assert parked.name == "evt-a-b--c.d.dead"
    assert parked.exchange.type == "direct"
