"""Keeps the platform's processes running under ``bookstore run``: a process that dies is
started again after a pause that doubles with each quick crash, and every exit and
restart is said on the terminal (docs/decisions/0090)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class Supervised(Protocol):
    """What the supervisor needs of a process (ops.processes.ManagedProcess has it)."""

    name: str
    log_path: Path

    @property
    def running(self) -> bool: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Pauses before restarts: ``first`` seconds, doubling while the process keeps dying
    within ``stable_after`` seconds of its start, never more than ``longest``."""

    first: float = 1.0
    longest: float = 30.0
    stable_after: float = 60.0

    def delay(self, previous: float | None, ran_for: float) -> float:
        """The pause after a run of ``ran_for`` seconds, given the previous pause."""
        if previous is None or ran_for >= self.stable_after:
            return self.first
        return min(previous * 2, self.longest)


def describe_exit(returncode: int | None) -> str:
    """``exited with status 1``, ``was killed by SIGKILL``."""
    if returncode is None:
        return "stopped"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclass
class _Watch:
    process: Supervised
    started_at: float
    pause: float | None = None  # the last pause before a restart
    restart_at: float | None = None  # set while the process waits to be started again
    restarts: int = 0


@dataclass
class Supervisor:
    """Call :meth:`started` once the processes run, then :meth:`check` every second or so.
    ``say`` prints one line; ``clock`` is a monotonic clock (injected by the tests)."""

    processes: Sequence[Supervised]
    say: Callable[[str], None]
    clock: Callable[[], float]
    backoff: Backoff = field(default_factory=Backoff)
    _watches: list[_Watch] = field(default_factory=list)

    def started(self) -> None:
        now = self.clock()
        self._watches = [_Watch(process, started_at=now) for process in self.processes]

    def check(self) -> None:
        now = self.clock()
        for watch in self._watches:
            process = watch.process
            if watch.restart_at is None:
                if process.running:
                    continue
                ran_for = now - watch.started_at
                watch.pause = self.backoff.delay(watch.pause, ran_for)
                watch.restart_at = now + watch.pause
                self.say(
                    f"{process.name} {describe_exit(process.returncode)} after {ran_for:.0f}s; "
                    f"restarting it in {watch.pause:g}s (its log: {process.log_path})"
                )
            elif now >= watch.restart_at:
                process.start()
                watch.restarts += 1
                watch.started_at = now
                watch.restart_at = None
                self.say(f"{process.name} restarted (pid {process.pid}, restart {watch.restarts})")

    def restarts(self, name: str) -> int:
        return sum(watch.restarts for watch in self._watches if watch.process.name == name)
