"""Idle culling on the real stack, with time injected (a 20-second idle timeout): the idle server is
stopped, its instance kept; a server whose kernel is running a silent cell counts as active."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.kernel import Kernel
from tests.e2e.stack import approved_user, wait_for
from tests.faults.harness import Person, check_nothing_leaked, running_fault_stack

pytestmark = pytest.mark.e2e

IDLE_TIMEOUT = 20
CHECK_EVERY = 4


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    settings = {
        "EC2HUB_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
        "EC2HUB_IDLE_CHECK_EVERY": str(CHECK_EVERY),
        "EC2HUB_ACTIVITY_INTERVAL": "3",
    }
    with running_fault_stack(tmp_path_factory, subnet_base=168, **settings) as stack:
        yield stack


def last_activity(someone: Person) -> datetime:
    server = someone.client.server(someone.name)
    assert server, f"{someone.name}'s server is running"
    return datetime.fromisoformat(server["last_activity"].replace("Z", "+00:00"))


def run_until_shut_down(kernel: Kernel, code: str) -> None:
    with contextlib.suppress(ConnectionError):  # the test shuts the kernel down mid-cell
        kernel.run(code)


def test_the_idle_server_is_stopped_and_the_busy_one_kept(stack):
    def running(name: str) -> Person:
        someone = Person(stack, name, approved_user(stack, name))
        someone.start_and_wait()
        someone.write_home("work.txt", f"{name}'s work\n")
        return someone

    with ThreadPoolExecutor(2) as pool:
        idle, busy = pool.map(running, ["nia", "oli"])
    kernel = Kernel(stack.settings.url, "oli", busy.token, timeout=600)
    # A cell that runs silently until the test shuts its kernel down.
    silent = "import time\nwhile True:\n    time.sleep(1)"
    cell = threading.Thread(target=run_until_shut_down, args=(kernel, silent))
    began = datetime.now(UTC)
    cell.start()

    idle.wait_stopped_by_hub(timeout=IDLE_TIMEOUT + 6 * CHECK_EVERY + 30)
    [nias] = idle.live_instances()
    assert nias["State"]["Name"] in ("stopping", "stopped"), "culled means stopped: the instance stays"

    # The silent cell's kernel sent its last message when the cell began; had that been the last
    # activity, the culler would have stopped oli by now. Its activity keeps being reported instead.
    past_the_timeout = began + timedelta(seconds=IDLE_TIMEOUT + 2 * CHECK_EVERY)
    wait_for(
        lambda: last_activity(busy) > past_the_timeout, 90, "oli's busy kernel to be reported as activity"
    )
    server = busy.client.server("oli")
    assert server and server["ready"], "the busy server was not culled"
    assert cell.is_alive(), "the cell is still running"
    busy.check_home()

    kernel.shutdown()
    cell.join(timeout=30)
    check_nothing_leaked(stack)
    idle.start_and_wait()
    idle.check_home()
    assert idle.the_instance()["InstanceId"] == nias["InstanceId"]
