"""When to restart a process that exited: the back-off of `shekara process` and of the `Stack`'s workers and sink.

A process that exits is restarted after a delay that starts small and doubles up to a ceiling, so a process
that cannot start (its broker gone for good, a bad setting) retries slowly instead of spinning; one that ran
long enough counts as healthy again and is restarted quickly the next time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    first: float = 1.0  # seconds before the first restart
    longest: float = 30.0
    settled: float = 60.0  # a process that ran this long resets the delay
    restarts: int = 0
    _delay: float = 0.0
    _started: float = 0.0

    def started(self, now: float) -> None:
        self._started = now

    def exited(self, now: float) -> float:
        """The process exited at `now`: the seconds to wait before starting it again."""
        if now - self._started >= self.settled:
            self._delay = 0.0
        self._delay = min(self.longest, self._delay * 2) if self._delay else self.first
        self.restarts += 1
        return self._delay


def exit_line(what: str, code: int, delay: float, restarts: int) -> str:
    """The one line a supervisor says when a process exited."""
    return f"{what} exited with code {code}; restarting in {delay:.0f} s (restart {restarts})"
