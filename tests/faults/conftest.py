"""Fault-injection tests: the counts of faults tried, instances leaked and homes lost, at the end."""

from __future__ import annotations

from tests.faults.harness import LEDGER


def pytest_terminal_summary(terminalreporter) -> None:
    if LEDGER["faults tried"]:
        terminalreporter.write_sep("=", "fault injection")
        terminalreporter.write_line(", ".join(f"{name}: {count}" for name, count in LEDGER.items()))
