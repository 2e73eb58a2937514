"""Reliable event handlers on a real broker and database: handled once, retried,
parked, listed, replayed (common/consumers.py, common/deadletters.py).

The handler is tests/integration/dead_letter_probe.py, run as its own nameko service in
the test vhost with a database of its own.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kombu import Connection
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from common import deadletters
from common.events import EnvelopePublisher, make_envelope
from ops import databases
from ops.processes import ManagedProcess
from tests import harness
from tests.integration import dead_letter_probe as probe
from tests.support import eventually, wait_until_quiet

QUEUE = f"evt-{probe.SOURCE}-{probe.EVENT_TYPE}--{probe.DeadLetterProbe.name}.handle"


class Probe:
    def __init__(self, platform: harness.Platform, engine: Engine) -> None:
        self.platform = platform
        self.engine = engine
        self.publisher = EnvelopePublisher(
            platform.amqp_uri, probe.SOURCE, {"AMQP_URI": platform.amqp_uri}
        )

    def publish(self, envelope: dict[str, Any]) -> None:
        self.publisher(envelope)

    def count(self, table: str, event_id: str) -> int:
        with self.engine.connect() as connection:
            return connection.scalar(
                text(f"SELECT count(*) FROM {table} WHERE event_id::text = :id"), {"id": event_id}
            )

    def execute(self, statement: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(text(statement))

    def rpc(self) -> Any:
        return self.platform.rpc(timeout=20)

    def parked(self, event_id: str | None) -> list[dict[str, Any]]:
        with self.rpc() as rpc:
            return [
                item
                for item in rpc.dead_letter_probe.list_dead_letters()
                if item["event_id"] == event_id
            ]


@pytest.fixture(scope="module")
def running_probe(platform: harness.Platform, tmp_path_factory) -> Iterator[Probe]:
    url = (
        make_url(harness.test_database_url("auth"))
        .set(database=f"bookstore_{harness.NAMESPACE}_dlq_probe")
        .render_as_string(hide_password=False)
    )
    databases.create_database(url, recreate=True)
    engine = create_engine(url)
    probe.Base.metadata.create_all(engine)
    log_dir = tmp_path_factory.mktemp("dead-letter-probe")
    config = log_dir / "probe.yaml"
    config.write_text(
        yaml.safe_dump({"AMQP_URI": platform.amqp_uri, "DB_URIS": {"dead_letter_probe:Base": url}})
    )
    process = ManagedProcess(
        name="dead-letter-probe",
        command=[
            sys.executable,
            "-m",
            "ops.nameko_cli",
            "run",
            "--config",
            str(config),
            "tests.integration.dead_letter_probe:DeadLetterProbe",
        ],
        log_path=log_dir / "probe.log",
        env=platform.env,
    )
    process.start()
    running = Probe(platform, engine)
    try:

        def answers() -> None:
            assert process.running, process.log_tail()
            try:
                with platform.rpc(timeout=2) as rpc:
                    assert rpc.dead_letter_probe.ping() == "ok"
            except Exception as error:
                raise AssertionError(str(error)) from error

        eventually(answers, timeout=60)
        yield running
    finally:
        process.stop()
        engine.dispose()


@pytest.fixture
def consumer(running_probe: Probe) -> Probe:
    running_probe.execute("TRUNCATE effects, attempts, breakage, handled_events")
    with Connection(running_probe.platform.amqp_uri) as connection:
        deadletters.parking_queue(QUEUE)(connection.default_channel).purge()
    return running_probe


def event(**data: Any) -> dict[str, Any]:
    return make_envelope(probe.SOURCE, probe.EVENT_TYPE, data)


def test_handler_queue_dead_letters_to_its_parking_queue(consumer):
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", harness.VHOST, "name", "arguments"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (line,) = [line for line in listing.splitlines() if line.split()[0] == QUEUE]
    assert deadletters.DEAD_LETTER_EXCHANGE in line
    assert f"{QUEUE}.dead" in line
    assert any(line.split()[0] == f"{QUEUE}.dead" for line in listing.splitlines())


def test_an_event_published_twice_is_handled_once(consumer):
    envelope = event(kind="good")
    consumer.publish(envelope)
    consumer.publish(envelope)

    def delivered_twice() -> None:
        assert consumer.count("attempts", envelope["id"]) == 2

    eventually(delivered_twice)
    # The attempt is counted before the effect is written: wait for both deliveries to
    # finish, then the effect must be there exactly once.
    wait_until_quiet(consumer.platform, QUEUE)
    assert consumer.count("attempts", envelope["id"]) == 2
    assert consumer.count("effects", envelope["id"]) == 1
    assert consumer.count("handled_events", envelope["id"]) == 1
    assert consumer.parked(envelope["id"]) == []


def test_a_poison_event_is_parked_at_once_listed_replayed_and_parked_again(consumer):
    envelope = event(kind="poison")
    consumer.publish(envelope)
    (parked,) = eventually(lambda: _parked_exactly(consumer, envelope["id"], 1))
    assert parked["type"] == probe.EVENT_TYPE
    assert parked["source"] == probe.SOURCE
    assert parked["correlation_id"] == envelope["correlation_id"]
    assert parked["queue"] == QUEUE
    assert parked["error"].startswith("InvalidInput: this event can never be handled")
    assert parked["attempts"] == 1  # nothing to wait for: parked without retries
    assert parked["failed_at"]
    # Listing leaves it where it is.
    assert consumer.parked(envelope["id"]) == [parked]
    assert consumer.count("attempts", envelope["id"]) == 1

    with consumer.rpc() as rpc:
        assert rpc.dead_letter_probe.replay_dead_letters(envelope["id"]) == {
            "replayed": 1,
            "event_ids": [envelope["id"]],
        }
    (again,) = eventually(lambda: _parked_exactly(consumer, envelope["id"], 2))
    assert consumer.count("attempts", envelope["id"]) == 2
    assert again["error"] == parked["error"]
    assert consumer.count("effects", envelope["id"]) == 0


def test_a_transient_failure_is_retried_before_parking(consumer):
    envelope = event(kind="transient")
    consumer.publish(envelope)
    (parked,) = eventually(lambda: _parked_exactly(consumer, envelope["id"], 1))
    assert parked["attempts"] == 3
    assert parked["error"].startswith("OperationalError")
    assert consumer.count("attempts", envelope["id"]) == 3


def test_parked_while_broken_then_replayed_after_the_fix_is_handled_exactly_once(consumer):
    consumer.execute("INSERT INTO breakage VALUES ('the tax table is missing')")
    envelope, bystander = event(kind="good"), event(kind="poison")
    consumer.publish(envelope)
    consumer.publish(bystander)
    (parked,) = eventually(lambda: _parked_exactly(consumer, envelope["id"], 1))
    eventually(lambda: _parked_exactly(consumer, bystander["id"], 1))
    assert "handler broken: the tax table is missing" in parked["error"]
    assert consumer.count("effects", envelope["id"]) == 0

    consumer.execute("DELETE FROM breakage")
    with consumer.rpc() as rpc:
        # Replaying one id leaves the other parked event alone.
        replayed = rpc.dead_letter_probe.replay_dead_letters(envelope["id"])
        assert replayed == {"replayed": 1, "event_ids": [envelope["id"]]}

    def handled() -> None:
        assert consumer.count("effects", envelope["id"]) == 1

    eventually(handled)
    assert consumer.parked(envelope["id"]) == []
    assert len(consumer.parked(bystander["id"])) == 1
    with consumer.rpc() as rpc:
        assert rpc.dead_letter_probe.replay_dead_letters(envelope["id"])["replayed"] == 0
    # A late duplicate of the same event changes nothing.
    consumer.publish(envelope)
    eventually(lambda: _attempted(consumer, envelope["id"], 3))
    wait_until_quiet(consumer.platform, QUEUE)
    assert consumer.count("effects", envelope["id"]) == 1


def test_a_message_that_is_not_an_envelope_is_parked(consumer):
    marker = str(uuid.uuid4())
    with Connection(consumer.platform.amqp_uri) as connection:
        connection.Producer().publish(
            ["not", "an", "envelope", marker],
            exchange=consumer.publisher.exchange,
            routing_key=probe.EVENT_TYPE,
            serializer="json",
            message_id=marker,
        )
    (parked,) = eventually(lambda: _parked_exactly(consumer, marker, 1))
    assert parked["error"].startswith("PoisonMessage")
    assert parked["type"] is None


def _parked_exactly(consumer: Probe, event_id: str, times: int) -> list[dict[str, Any]]:
    parked = consumer.parked(event_id)
    assert len(parked) == 1, parked
    assert parked[0]["parked_count"] == times, parked
    return parked


def _attempted(consumer: Probe, event_id: str, times: int) -> None:
    assert consumer.count("attempts", event_id) == times
