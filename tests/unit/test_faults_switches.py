"""The local cloud's fault switches, without a cloud: counting down, matching, EC2's error documents."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest

from localcloud.faults import FaultError, Faults, error_response, request_params


def test_switches_are_off_by_default():
    faults = Faults()
    assert not faults.take_boot_failure()
    assert faults.boot_delay == 0
    assert faults.api_error_for("RunInstances", {}) == ""


def test_an_api_error_lasts_exactly_the_next_n_matching_calls():
    faults = Faults()
    faults.add_api_error("RunInstances", "RequestLimitExceeded", 2)
    assert faults.api_error_for("DescribeInstances", {}) == ""
    assert faults.api_error_for("RunInstances", {}) == "RequestLimitExceeded"
    assert faults.api_error_for("RunInstances", {}) == "RequestLimitExceeded"
    assert faults.api_error_for("RunInstances", {}) == ""


def test_a_capacity_error_can_be_limited_to_one_subnet():
    faults = Faults()
    faults.add_api_error("RunInstances", "InsufficientInstanceCapacity", 5, subnet="subnet-a")
    assert faults.api_error_for("RunInstances", {"SubnetId": "subnet-b"}) == ""
    assert faults.api_error_for("RunInstances", {"SubnetId": "subnet-a"}) == "InsufficientInstanceCapacity"


def test_boot_failures_are_used_up():
    faults = Faults()
    faults.fail_boots(1)
    assert faults.take_boot_failure()
    assert not faults.take_boot_failure()


def test_unknown_codes_and_unbounded_delays_are_refused():
    faults = Faults()
    with pytest.raises(FaultError, match="code must be one of"):
        faults.add_api_error("RunInstances", "Teapot", 1)
    with pytest.raises(FaultError):
        faults.delay_boots(10_000)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InsufficientInstanceCapacity", 500),
        ("RequestLimitExceeded", 503),
        ("UnauthorizedOperation", 403),
        ("InternalError", 500),
    ],
)
def test_errors_are_ec2_error_documents(code, status):
    answered, body = error_response(code)
    assert answered == status
    assert ET.fromstring(body).find("./Errors/Error/Code").text == code  # noqa: S314 - our own document


def test_request_params_read_the_buffered_form_body():
    environ = {"wsgi.input": io.BytesIO(b"Action=RunInstances&SubnetId=subnet-a"), "QUERY_STRING": ""}
    assert request_params(environ) == {"Action": "RunInstances", "SubnetId": "subnet-a"}
