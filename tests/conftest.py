"""The whole run's hooks: the fault-injection counts (tests/faults) summed over pytest-xdist's workers."""

from __future__ import annotations

import pytest

from tests.faults.harness import LEDGER


def pytest_sessionfinish(session) -> None:
    # In a worker: its counts go back to the controller with the worker's end.
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["fault_ledger"] = dict(LEDGER)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    for name, count in getattr(node, "workeroutput", {}).get("fault_ledger", {}).items():
        LEDGER[name] += count


def pytest_terminal_summary(terminalreporter) -> None:
    if LEDGER["faults tried"]:
        terminalreporter.write_sep("=", "fault injection")
        terminalreporter.write_line(", ".join(f"{name}: {count}" for name, count in LEDGER.items()))
