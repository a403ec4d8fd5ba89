"""The whole run's hooks: the longest test modules first, and the fault-injection counts (tests/faults)
summed over pytest-xdist's workers."""

from __future__ import annotations

import pytest

from tests.faults.harness import LEDGER

# The modules that take longest (several minutes each, with stacks of their own), longest first: on
# `make test`'s workers, which take whole modules in this order, they start early and the workers end
# together instead of one running the last long module alone. The others keep their file order.
LONGEST_FIRST = (
    "tests/e2e/test_airflow_pipeline.py",
    "tests/faults/test_faults.py",
    "tests/faults/test_ownership.py",
    "tests/terraform/test_apply_localcloud.py",
    "tests/faults/test_restarts.py",
    "tests/e2e/test_jobs.py",
    "tests/browser/test_origins_in_browser.py",
    "tests/terraform/test_mwaa_apply.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    if config.pluginmanager.has_plugin("randomly"):
        return  # `-p randomly`: the shuffled order is the point
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    root = f"{config.rootpath}/"
    items.sort(key=lambda item: rank.get(str(item.path).removeprefix(root), len(rank)))


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
