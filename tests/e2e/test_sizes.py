"""Sizes through the hub: forged choices are refused before anything is created; resize on resume,
with the user's own packages kept."""

from __future__ import annotations

import pytest

from tests.e2e.kernel import Kernel
from tests.e2e.stack import approved_user, aws_client, instances_of, running_stack

pytestmark = pytest.mark.e2e

ALLOWED = "You may pick: small, medium, large."


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory, subnet_base=198) as stack:
        yield stack


@pytest.fixture(scope="module")
def alice(stack):
    return approved_user(stack, "alice")


@pytest.fixture(scope="module")
def nico(stack):
    """A user whose every start is forged: no test starts a server of nico's."""
    return approved_user(stack, "nico")


@pytest.mark.parametrize(
    "options",
    [
        {"size": "xl"},
        {"size": "gpu"},
        {"size": "p5.48xlarge"},
        {"size": ["small", "large"]},
        {"size": 7},
        {"size": "small", "spot": True},
        {"size": "medium", "spot": "please"},
        {"size": "medium", "instance_type": "p5.48xlarge"},
        {"image_id": "ami-0000000000000000"},
    ],
    ids=[
        "unknown",
        "gpu-non-member",
        "raw-type",
        "list",
        "number",
        "spot-not-offered",
        "junk-spot",
        "forged-field",
        "forged-image",
    ],
)
def test_forged_rest_user_options_get_400_and_launch_nothing(stack, nico, options):
    response = nico.api("POST", "/users/nico/server", json=options)
    assert response.status_code == 400, response.text
    assert ALLOWED in response.json()["message"]
    assert instances_of(aws_client(stack, "ec2"), "nico") == []
    assert nico.server("nico") is None


def test_forged_form_gets_400_with_the_form_and_launches_nothing(stack, nico):
    nico.session.get(f"{stack.settings.url}/hub/spawn", timeout=30)
    response = nico.session.post(
        f"{stack.settings.url}/hub/spawn/nico",
        data={"size": "gpu", "_xsrf": nico.session.cookies["_xsrf"]},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 400
    assert "not open to you" in response.text and ALLOWED in response.text
    assert 'name="size" value="medium"' in response.text, "the form is shown again"
    assert instances_of(aws_client(stack, "ec2"), "nico") == []


# A small package that is not in the image, from the index the image installs from.
OWN_PACKAGE = "tabulate==0.9.0"
IMPORT_OWN = "import tabulate, sys; print(tabulate.__version__, tabulate.__file__, sys.executable)"


def own_package(stack, alice) -> str:
    """Where the kernel imports the user's own package from (its version and file)."""
    kernel = Kernel(stack.settings.url, "alice", alice.token("alice"))
    try:
        ran = kernel.run(IMPORT_OWN)
    finally:
        kernel.shutdown()
    assert ran.ok, ran.errors
    return ran.stdout


def test_a_stopped_server_resumes_on_the_same_instance_with_the_new_size_and_own_packages(stack, alice):
    ec2 = aws_client(stack, "ec2")
    assert alice.api("POST", "/users/alice/server", json={"size": "small"}).status_code in (201, 202)
    alice.wait_ready("alice")
    [first] = instances_of(ec2, "alice")
    assert first["InstanceType"] == "t3.medium"
    kernel = Kernel(stack.settings.url, "alice", alice.token("alice"), timeout=300)
    try:
        assert not kernel.run(IMPORT_OWN).ok, "the package is not in the image"
        installed = kernel.run(
            "import subprocess, sys\n"
            "pip = [sys.executable, '-m', 'pip', 'install', '--user', '--quiet']\n"
            f"done = subprocess.run(pip + [{OWN_PACKAGE!r}], capture_output=True, text=True)\n"
            "print(done.returncode, done.stderr[-2000:])"
        )
    finally:
        kernel.shutdown()
    assert installed.ok and installed.stdout.startswith("0 "), installed
    version, path, _ = own_package(stack, alice).split()
    assert version == "0.9.0" and "/.local/lib/" in path, path
    alice.stop("alice")

    assert alice.api("POST", "/users/alice/server", json={"size": "small"}).status_code in (201, 202)
    alice.wait_ready("alice")
    assert own_package(stack, alice).split()[:2] == [version, path], "kept across stop and start"
    alice.stop("alice")

    assert alice.api("POST", "/users/alice/server", json={"size": "large"}).status_code in (201, 202)
    alice.wait_ready("alice")
    [resumed] = instances_of(ec2, "alice")
    assert resumed["InstanceId"] == first["InstanceId"]
    assert resumed["InstanceType"] == "m6i.4xlarge"
    assert own_package(stack, alice).split()[:2] == [version, path], "kept across a resize"
    alice.stop("alice")


def test_progress_reports_real_phases_with_a_rising_bar(stack):
    import json

    dora = approved_user(stack, "dora")

    assert dora.api("POST", "/users/dora/server", json={"size": "medium", "spot": True}).status_code in (
        201,
        202,
    )
    events = []
    with dora.session.get(
        f"{stack.settings.url}/hub/api/users/dora/server/progress",
        headers={"X-XSRFToken": dora.session.cookies["_xsrf"]},
        stream=True,
        timeout=120,
    ) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                events.append(json.loads(line.removeprefix("data:")))
                if events[-1].get("ready") or events[-1].get("failed"):
                    break
    dora.wait_ready("dora")
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 100 and events[-1]["ready"]
    # The stream replays the phases only to a page that opens it before the server is up; the hub's
    # log has every one of them, in order, whenever the page looks.
    log = (stack.settings.state_dir / "stack.log").read_text()
    said = [line.split("dora: ", 1)[1] for line in log.splitlines() if "spawner" in line and "dora: " in line]
    phases = ["Preparing your AWS identity", "is pending", "is running"]
    found = [next((i for i, m in enumerate(said) if phase in m), -1) for phase in phases]
    assert -1 not in found and found == sorted(found), said
    [instance] = instances_of(aws_client(stack, "ec2"), "dora")
    assert instance.get("InstanceLifecycle") == "spot"
    dora.stop("dora")
