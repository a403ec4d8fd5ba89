"""User-data rendering: names and values reach the bootstrap intact, nothing else slips in."""

import subprocess

import pytest

from spawner.userdata import USER_DATA_LIMIT, render_user_data


def exported(script: str, name: str) -> str:
    body = script.replace("exec ec2hub-bootstrap", f'printf %s "${name}"')
    return subprocess.run(["sh", "-c", body], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize(
    "value",
    ["alice", "o'brien", "$(touch /tmp/pwned)", "a b\nc", "émile;rm -rf /", "`id`"],
)
def test_values_arrive_verbatim_and_are_never_executed(value):
    script = render_user_data({"JUPYTERHUB_USER": value})
    assert exported(script, "JUPYTERHUB_USER") == value


def test_names_that_are_not_variables_are_refused():
    with pytest.raises(ValueError, match="not an environment variable name"):
        render_user_data({"A;B": "x"})


def test_oversized_user_data_is_refused():
    with pytest.raises(ValueError, match="EC2 allows"):
        render_user_data({"BIG": "x" * USER_DATA_LIMIT})
