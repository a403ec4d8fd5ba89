"""What to do when a tool the suite needs (slapd, the Terraform provider, chromium) is missing.

In CI and by default the test fails, naming the fix: nothing the suite needs is skipped silently.
A developer without the tool may opt out with EC2HUB_TESTS_ALLOW_MISSING=1; the test is then
skipped with the same reason, and pytest's summary (-ra) lists every such skip.
"""

from __future__ import annotations

import os

import pytest

OPT_OUT = "EC2HUB_TESTS_ALLOW_MISSING"


def missing(reason: str) -> None:
    """Fail the test with `reason` (or skip it, when the developer opted out)."""
    if os.environ.get(OPT_OUT) == "1":
        pytest.skip(f"{reason} (skipped: {OPT_OUT}=1)")
    pytest.fail(f"{reason} (a developer without it may set {OPT_OUT}=1 to skip such tests)")
