"""No secret reaches the hub instance's user-data: read from the Terraform code, through its locals,
resource arguments and module arguments, from the user-data back to the variables it is made of.

User-data is readable by whoever may describe the instance, and is kept in the state: the hub's
secrets go to SSM parameters instead (terraform/modules/hub), and only their names reach it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

from tests.terraform.tooling import TERRAFORM_DIR

HUB_MODULE = TERRAFORM_DIR / "modules" / "hub"
# Names of variables that hold secrets; a variable marked sensitive or ephemeral counts as one too.
SECRET_NAME = re.compile(r"password|secret|token|key", re.IGNORECASE)
ROOT_SECRETS = [
    "hub_oauth_client_secret",
    "hub_ldap_search_password",
    "hub_proxy_auth_token",
    "hub_database_url",
]
REFERENCE = re.compile(
    r"\b(?P<kind>var|local|module)\.(?P<name>[A-Za-z_][\w-]*)"
    r"|(?<![\w.])(?P<type>aws_\w+)\.(?P<resource>[A-Za-z_][\w-]*)(?:\[[^\]]*\])?(?:\.(?P<attribute>\w+))?"
)


def unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


@dataclass
class Module:
    """The parts of one Terraform module that values flow through."""

    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> Module:
        module = cls()
        for path in sorted(directory.glob("*.tf")):
            with path.open() as f:
                parsed = hcl2.load(f)
            for block in parsed.get("variable", []):
                module.variables.update({unquote(k): v for k, v in block.items()})
            for block in parsed.get("locals", []):
                module.locals.update({k: v for k, v in block.items() if not k.startswith("__")})
            for block in parsed.get("resource", []):
                for kind, named in block.items():
                    for name, body in named.items():
                        module.resources[unquote(kind), unquote(name)] = body
            for block in parsed.get("module", []):
                module.modules.update({unquote(k): v for k, v in block.items()})
        return module

    def variables_in(self, expression: Any, seen: set | None = None) -> set[str]:
        """The module's variables that `expression` is made of, through locals and the arguments of
        the module's resources (an attribute Terraform computes, such as an id, carries none)."""
        seen = set() if seen is None else seen
        text = expression if isinstance(expression, str) else json.dumps(expression)
        found: set[str] = set()
        for match in REFERENCE.finditer(text):
            if match["kind"] == "var":
                found.add(match["name"])
            elif match["kind"] == "local" and ("local", match["name"]) not in seen:
                seen.add(("local", match["name"]))
                found |= self.variables_in(self.locals[match["name"]], seen)
            elif match["type"] and (match["type"], match["resource"]) in self.resources:
                key = (match["type"], match["resource"], match["attribute"])
                if key in seen:
                    continue
                seen.add(key)
                body = self.resources[match["type"], match["resource"]]
                # each.value and count.index come from for_each and count.
                parts = [body.get(name) for name in (match["attribute"], "for_each", "count") if name]
                found |= self.variables_in([p for p in parts if p is not None], seen)
        return found

    def is_secret(self, name: str) -> bool:
        body = self.variables.get(name, {})
        return bool(SECRET_NAME.search(name) or body.get("sensitive") or body.get("ephemeral"))


def user_data_variables(hub: Module, root: Module) -> tuple[set[str], set[str]]:
    """The hub module's and the root module's variables that the hub instance's user-data is made of."""
    in_hub = hub.variables_in(hub.resources["aws_instance", "hub"]["user_data"])
    arguments = root.modules["hub"]
    in_root = root.variables_in([arguments[name] for name in sorted(in_hub) if name in arguments])
    return in_hub, in_root


def secrets_in_user_data(hub: Module, root: Module) -> set[str]:
    in_hub, in_root = user_data_variables(hub, root)
    return {f"module.hub: var.{v}" for v in in_hub if hub.is_secret(v)} | {
        f"root: var.{v}" for v in in_root if root.is_secret(v)
    }


def test_no_variable_named_like_a_secret_reaches_the_hubs_user_data():
    hub, root = Module.load(HUB_MODULE), Module.load(TERRAFORM_DIR)
    in_hub, in_root = user_data_variables(hub, root)
    # The analysis sees what user-data is made of (the environment, the image)...
    assert {"hub_environment", "hub_image", "parameter_versions"} <= in_hub
    assert {"hub_environment", "hub_image", "hub_parameter_versions"} <= in_root
    # ...and the secrets are there to be found, but not in it.
    assert {"secrets"} <= {v for v in hub.variables if hub.is_secret(v)}
    assert set(ROOT_SECRETS) <= {v for v in root.variables if root.is_secret(v)}
    assert secrets_in_user_data(hub, root) == set()


def test_a_secret_put_into_user_data_is_found():
    """The check above can fail: a secret wired into the environment, in either module, is caught."""
    hub, root = Module.load(HUB_MODULE), Module.load(TERRAFORM_DIR)
    hub.locals["environment"] += " ${var.secrets.oauth_client_secret}"
    assert {"module.hub: var.secrets", "root: var.hub_oauth_client_secret"} <= secrets_in_user_data(hub, root)

    hub, root = Module.load(HUB_MODULE), Module.load(TERRAFORM_DIR)
    root.locals["base_environment"] += " ${var.hub_ldap_search_password}"
    assert secrets_in_user_data(hub, root) == {"root: var.hub_ldap_search_password"}


def test_every_secret_variable_is_sensitive_and_ephemeral():
    """Sensitive keeps a value out of what Terraform prints; ephemeral keeps it out of the plan file
    and the state (the SSM parameters take it write-only)."""
    hub, root = Module.load(HUB_MODULE), Module.load(TERRAFORM_DIR)
    for module, names in ((hub, ["secrets"]), (root, ROOT_SECRETS)):
        assert {
            n: (module.variables[n].get("sensitive"), module.variables[n].get("ephemeral")) for n in names
        } == {n: (True, True) for n in names}
