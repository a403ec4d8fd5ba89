"""The costs module as Terraform plans it: the cost allocation tags and the budget on the hub's spend.

Planned, not applied: moto 5.2.5 (the local cloud) has no Cost Explorer cost allocation tag calls
(UpdateCostAllocationTagsStatus, ListCostAllocationTags), and its Budgets answers 500 to two calls
the provider makes reading every budget (DescribeSubscribersForNotification, ListTagsForResource),
so an apply never ends. The plan needs no AWS call: it shows what Terraform would send.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from spawner.owner import TAG_HUB, TAG_PURPOSE, TAG_USER
from tests.terraform.tooling import TERRAFORM_DIR, Terraform, cli_config

HUB_ID = "hub-a"
EMAILS = ["ops@example.org", "finance@example.org"]


@pytest.fixture(scope="module")
def tf(tmp_path_factory):
    work = tmp_path_factory.mktemp("costs")
    root = work / "root"
    root.mkdir()
    (root / "main.tf").write_text(
        textwrap.dedent(
            f"""\
            provider "aws" {{
              region                      = "us-east-1"
              access_key                  = "testing"
              secret_key                  = "testing"
              skip_credentials_validation = true
              skip_requesting_account_id  = true
              skip_metadata_api_check     = true
            }}

            variable "cost_allocation_tags" {{
              type = bool
            }}

            variable "monthly_budget_usd" {{
              type    = number
              default = null
            }}

            module "costs" {{
              source               = "{TERRAFORM_DIR / "modules" / "costs"}"
              name                 = "ec2hub"
              hub_id               = "{HUB_ID}"
              account_id           = "123456789012"
              cost_allocation_tags = var.cost_allocation_tags
              monthly_budget_usd   = var.monthly_budget_usd
              alarm_emails         = {json.dumps(EMAILS)}
              tags                 = {{ "ec2hub:deployment" = "ec2hub" }}
            }}

            output "costs" {{
              value = module.costs
            }}
            """
        )
    )
    tf = Terraform(root, cli_config(work), env={"TF_DATA_DIR": str(work / "data")})
    tf.check("init", "-input=false")
    return tf


def planned(tf: Terraform, *variables: str) -> dict:
    args = [arg for variable in variables for arg in ("-var", variable)]
    tf.check("plan", "-input=false", "-out=tfplan", *args)
    return json.loads(tf.check("show", "-json", "tfplan").stdout)


def test_tags_of_instances_and_deployment_become_cost_allocation_tags_and_the_budget_counts_the_hub(tf):
    plan = planned(tf, "cost_allocation_tags=true", "monthly_budget_usd=250")
    changes = {c["address"]: c["change"]["after"] for c in plan["resource_changes"]}
    tags = {a["tag_key"]: a["status"] for k, a in changes.items() if ".aws_ce_cost_allocation_tag." in k}
    assert tags == {key: "Active" for key in (TAG_HUB, TAG_USER, TAG_PURPOSE, "ec2hub:deployment")}

    budget = changes["module.costs.aws_budgets_budget.hub[0]"]
    assert (budget["name"], budget["budget_type"], budget["time_unit"]) == (
        "ec2hub-hub-monthly",
        "COST",
        "MONTHLY",
    )
    assert (budget["limit_amount"], budget["limit_unit"]) == ("250", "USD")
    # AWS Budgets names a user-defined cost allocation tag "user:<key>", and a value after "$".
    assert budget["cost_filter"] == [{"name": "TagKeyValue", "values": [f"user:{TAG_HUB}${HUB_ID}"]}]
    notifications = {
        (n["notification_type"], n["threshold"], n["threshold_type"], n["comparison_operator"]): sorted(
            n["subscriber_email_addresses"]
        )
        for n in budget["notification"]
    }
    assert notifications == {
        ("ACTUAL", 80, "PERCENTAGE", "GREATER_THAN"): sorted(EMAILS),
        ("FORECASTED", 100, "PERCENTAGE", "GREATER_THAN"): sorted(EMAILS),
    }
    assert plan["planned_values"]["outputs"]["costs"]["value"]["budget_name"] == "ec2hub-hub-monthly"


def test_without_a_budget_and_tags_nothing_is_planned(tf):
    plan = planned(tf, "cost_allocation_tags=false")
    assert plan.get("resource_changes", []) == []
    assert plan["planned_values"]["outputs"]["costs"]["value"] == {
        "budget_name": None,
        "cost_allocation_tag_keys": [],
    }


def test_a_budget_of_nothing_is_refused(tf):
    result = tf.run(
        "plan", "-input=false", "-var", "cost_allocation_tags=false", "-var", "monthly_budget_usd=0"
    )
    assert result.returncode != 0
    assert "monthly_budget_usd must be greater than 0" in result.stderr
