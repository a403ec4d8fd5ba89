"""Static checks of the deployment code: Terraform fmt and validate, checkov, hadolint, the Packer template.

Packer: Debian's packer (1.6) runs `packer fmt -check`; `packer validate` needs the amazon plugin,
which only GitHub serves, so the template's structure is checked here instead, by parsing it with
python-hcl2: the sources, the build, and every file and script a provisioner names.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import hcl2
import pytest

from hub.settings import REPO_ROOT
from tests.terraform.tooling import (
    TERRAFORM_DIR,
    Terraform,
    checkov_binary,
    cli_config,
    hadolint_binary,
    packer_binary,
    terraform_binary,
    working_copy,
)

PACKER_DIR = REPO_ROOT / "images" / "packer"
PACKER_TEMPLATE = PACKER_DIR / "ec2hub-user.pkr.hcl"
DOCKERFILES = [REPO_ROOT / "Dockerfile", REPO_ROOT / "images" / "user" / "Dockerfile"]


def run(*command: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    sys.stdout.write(result.stdout[-4000:])
    sys.stderr.write(result.stderr[-4000:])
    return result


def unquote(value):
    """python-hcl2 keeps the quotes of string literals."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def test_terraform_is_formatted():
    result = run(terraform_binary(), "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR))
    assert result.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{result.stdout}"


@pytest.mark.parametrize("module", [".", "examples/complete"])
def test_terraform_validates(module, tmp_path):
    copy = working_copy(tmp_path / "repo")
    tf = Terraform(copy / module, cli_config(tmp_path), env={"TF_DATA_DIR": str(tmp_path / "data")})
    tf.check("init", "-backend=false", "-input=false")
    tf.check("validate")


def test_checkov_finds_nothing_unjustified():
    result = run(
        str(checkov_binary()),
        "--directory",
        str(TERRAFORM_DIR),
        "--framework",
        "terraform",
        "--skip-download",  # no network: no guideline links, nothing else changes
        "--output",
        "json",
        timeout=600,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    summary = reports[0]["summary"]
    print(f"checkov {summary['checkov_version']}: {summary}")
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100, "checkov scanned the modules"
    assert not failed, [(c["check_id"], c["resource"], c["file_path"]) for c in failed]
    # Each skip says why, beside it (`#checkov:skip=CKV_...:reason`).
    unexplained = [c["check_id"] for c in skipped if len(c["check_result"].get("suppress_comment", "")) < 20]
    assert not unexplained, unexplained
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_dockerfile_passes_hadolint(dockerfile):
    result = run(hadolint_binary(), "--no-color", str(dockerfile))
    assert result.returncode == 0, result.stdout


def test_hub_image_runs_the_hub_unprivileged_with_a_health_check():
    text = (REPO_ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n?.*?/hub/health", text, re.MULTILINE)
    assert "jupyterhub_config.py" in text
    assert "configurable-http-proxy" in (REPO_ROOT / "package-lock.json").read_text()


def test_packer_template_is_formatted():
    result = run(packer_binary(), "fmt", "-check", "-diff", str(PACKER_DIR))
    assert result.returncode == 0, f"run `packer fmt images/packer`:\n{result.stdout}"


def test_packer_template_builds_cpu_and_gpu_images_from_files_that_exist():
    with PACKER_TEMPLATE.open() as f:
        template = hcl2.load(f)

    [packer] = template["packer"]
    [plugins] = packer["required_plugins"]
    assert unquote(plugins["amazon"]["source"]) == "github.com/hashicorp/amazon"

    sources = {
        (unquote(kind), unquote(name)): body
        for block in template["source"]
        for kind, named in block.items()
        for name, body in named.items()
    }
    assert set(sources) == {("amazon-ebs", "user")}
    user = sources["amazon-ebs", "user"]
    assert user["encrypt_boot"] is True
    assert user["metadata_options"][0]["http_tokens"] == '"required"', "IMDSv2 only, as on user instances"
    [ami_filter] = user["source_ami_filter"]
    assert unquote(ami_filter["owners"][0]) == "099720109477", "an official Ubuntu image from Canonical"

    [build] = template["build"]
    named = {unquote(body["name"]) for block in build["source"] for body in block.values()}
    assert named == {"cpu", "gpu"}
    assert all(unquote(key) == "source.amazon-ebs.user" for block in build["source"] for key in block)

    declared = {unquote(name) for block in template["variable"] for name in block}
    referenced = set(re.findall(r"var\.([a-z_]+)", PACKER_TEMPLATE.read_text()))
    assert referenced <= declared, referenced - declared

    provisioners = [(unquote(kind), body) for block in build["provisioner"] for kind, body in block.items()]
    paths = []
    for _, body in provisioners:
        for key in ("source", "sources", "script", "scripts"):
            values = body.get(key, [])
            paths += [unquote(v) for v in (values if isinstance(values, list) else [values])]
    assert paths, "the provisioners upload files and run scripts"
    for path in paths:
        assert path.startswith("${path.root}/"), path
        assert (PACKER_DIR / path.removeprefix("${path.root}/")).resolve().exists(), path
    uploaded = {(PACKER_DIR / p.removeprefix("${path.root}/")).resolve() for p in paths}
    assert REPO_ROOT / "images" / "user" / "requirements.txt" in uploaded, "the pinned user environment"
    assert REPO_ROOT / "images" / "bootstrap" in uploaded, "the bootstrap user-data hands over to"

    gpu_only = [body for kind, body in provisioners if body.get("only") == ['"amazon-ebs.gpu"']]
    assert [unquote(b["script"]) for b in gpu_only] == ["${path.root}/scripts/install-nvidia-driver.sh"]


def test_ami_runs_user_data_at_every_boot_through_the_bootstrap():
    cloud_config = (PACKER_DIR / "files" / "90-ec2hub-user-data-every-boot.cfg").read_text()
    assert "- [scripts-user, always]" in cloud_config
    launcher = (PACKER_DIR / "files" / "ec2hub-bootstrap-launcher").read_text()
    assert "/opt/ec2hub/bootstrap/ec2hub-bootstrap" in launcher
    install = (PACKER_DIR / "scripts" / "install-user-environment.sh").read_text()
    assert "/usr/local/bin/ec2hub-bootstrap" in install and "requirements.txt" in install


def test_every_user_environment_carries_the_hubs_jupyterlab_settings():
    """One overrides file, installed where JupyterLab reads an admin's settings (<sys.prefix>/share/
    jupyter/lab/settings) by the AMI, the user image and the local cloud's environment alike."""
    overrides = json.loads((REPO_ROOT / "images" / "user" / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    target = "/opt/ec2hub/venv/share/jupyter/lab/settings/overrides.json"
    install = (PACKER_DIR / "scripts" / "install-user-environment.sh").read_text()
    assert f'"$staged/overrides.json" {target}' in install
    assert '"${path.root}/../user/overrides.json"' in PACKER_TEMPLATE.read_text()
    dockerfile = (REPO_ROOT / "images" / "user" / "Dockerfile").read_text()
    assert f"COPY images/user/overrides.json {target}" in dockerfile
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json" in makefile
    assert re.search(r"^\$\(LAB_OVERRIDES\): images/user/overrides.json$", makefile, re.MULTILINE)
    assert re.search(r"^install: .*\$\(LAB_OVERRIDES\)", makefile, re.MULTILINE)


def test_tfvars_example_sets_variables_of_the_example():
    with (TERRAFORM_DIR / "examples" / "complete" / "variables.tf").open() as f:
        blocks = hcl2.load(f)["variable"]
    variables = {unquote(name): body for block in blocks for name, body in block.items()}
    with (TERRAFORM_DIR / "terraform.tfvars.example").open() as f:
        example = {name for name in hcl2.load(f) if not name.startswith("__")}
    assert example <= set(variables), example - set(variables)
    # Secrets are ephemeral and come from TF_VAR_*, never from a file in the repository.
    secrets = {name for name, body in variables.items() if body.get("ephemeral")}
    assert not example & secrets, example & secrets
    required = {name for name, body in variables.items() if "default" not in body} - secrets
    assert required <= example, required - example


def test_hub_may_launch_the_default_sizes_and_nothing_else_by_default():
    """The hub's role launches only the instance types Terraform lists (user_instance_types and
    user_instance_type); their defaults are the types of the spawner's default sizes."""
    from hub.policies import default_instance_types

    with (TERRAFORM_DIR / "variables.tf").open() as f:
        blocks = hcl2.load(f)["variable"]
    variables = {unquote(name): body for block in blocks for name, body in block.items()}
    listed = {unquote(t) for t in variables["user_instance_types"]["default"]}
    listed.add(unquote(variables["user_instance_type"]["default"]))
    assert sorted(listed) == default_instance_types()
