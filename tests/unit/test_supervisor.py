"""The restart rules of ``bookstore run`` (ops/supervisor.py), with a fake clock and fake
processes; tests/e2e/test_docs_and_run.py kills a real service under ``bookstore run``."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

from ops.supervisor import Backoff, Supervisor, describe_exit


@dataclass
class FakeProcess:
    name: str
    log_path: Path = Path("var/log/fake.log")
    running: bool = True
    returncode: int | None = None
    pid: int | None = 100
    starts: int = 0

    def die(self, returncode: int) -> None:
        self.running, self.returncode = False, returncode

    def start(self) -> None:
        self.starts += 1
        self.running, self.returncode, self.pid = True, None, 100 + self.starts


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    processes: list[FakeProcess]
    clock: Clock = field(default_factory=Clock)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(
            self.processes,
            say=self.lines.append,
            clock=self.clock,
            backoff=Backoff(first=1, longest=8, stable_after=60),
        )
        self.supervisor.started()

    def at(self, now: float) -> None:
        self.clock.now = now
        self.supervisor.check()


def test_a_dead_process_is_restarted_after_the_first_pause_and_both_are_said():
    order, gateway = FakeProcess("order"), FakeProcess("gateway")
    harness = Harness([order, gateway])
    harness.at(10)
    assert harness.lines == []

    order.die(-signal.SIGKILL)
    harness.at(20)
    assert harness.lines == [
        "order was killed by SIGKILL after 20s; restarting it in 1s (its log: var/log/fake.log)"
    ]
    harness.at(20.5)
    assert order.starts == 0
    harness.at(21)
    assert order.starts == 1
    assert harness.lines[-1] == "order restarted (pid 101, restart 1)"
    assert gateway.starts == 0
    assert harness.supervisor.restarts("order") == 1


def test_quick_crashes_double_the_pause_up_to_the_longest():
    order = FakeProcess("order")
    harness = Harness([order])
    pauses = []
    now = 0.0
    for _ in range(6):
        order.die(1)
        harness.at(now)
        pauses.append(float(harness.lines[-1].split("restarting it in ")[1].split("s")[0]))
        now += pauses[-1]
        harness.at(now)
        assert order.running
    assert pauses == [1, 2, 4, 8, 8, 8]


def test_a_process_that_ran_long_enough_starts_again_from_the_first_pause():
    order = FakeProcess("order")
    harness = Harness([order])
    order.die(1)
    harness.at(0)
    harness.at(1)  # restarted; dies again a second later
    order.die(1)
    harness.at(2)
    assert "restarting it in 2s" in harness.lines[-1]
    harness.at(4)  # restarted; runs over a minute this time
    order.die(1)
    harness.at(70)
    assert "restarting it in 1s" in harness.lines[-1]


def test_exits_are_described_by_status_or_signal():
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(-signal.SIGTERM) == "was killed by SIGTERM"
    assert describe_exit(-200) == "was killed by signal 200"
