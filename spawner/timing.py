"""How long each phase of a start took, for the hub's log (and bench/spawn.py, which reads it)."""

from __future__ import annotations

import json
import time


class PhaseTimer:
    """Marks the end of each phase; `report()` gives each phase's seconds and the total, as JSON."""

    def __init__(self) -> None:
        self._start = self._last = time.monotonic()
        self.phases: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.phases[phase] = round(now - self._last, 3)
        self._last = now

    def report(self) -> str:
        return json.dumps({**self.phases, "total": round(self._last - self._start, 3)})
