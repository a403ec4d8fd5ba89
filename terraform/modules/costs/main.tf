# The tags that say whose a cost is: the hub's instances carry ec2hub:hub, ec2hub:user and
# ec2hub:purpose (spawner/owner.py); every resource of this deployment carries ec2hub:deployment.
locals {
  cost_allocation_tag_keys = ["ec2hub:hub", "ec2hub:user", "ec2hub:purpose", "ec2hub:deployment"]

  # Budgets name a user-defined cost allocation tag "user:<key>" and join key and value with "$".
  # format(), not interpolation: "$${" is HCL's escape for a literal "${", not a "$" then a value.
  hub_tag_filter = format("user:ec2hub:hub$%s", var.hub_id)

  # Percent of the monthly limit at which the budget mails alarm_emails: spent, or forecast to be.
  budget_notifications = length(var.alarm_emails) == 0 ? {} : {
    ACTUAL     = 80
    FORECASTED = 100
  }
}

resource "aws_ce_cost_allocation_tag" "this" {
  for_each = var.cost_allocation_tags ? toset(local.cost_allocation_tag_keys) : toset([])

  tag_key = each.value
  status  = "Active"
}

resource "aws_budgets_budget" "hub" {
  count = var.monthly_budget_usd == null ? 0 : 1

  name         = "${var.name}-hub-monthly"
  account_id   = var.account_id
  budget_type  = "COST"
  time_unit    = "MONTHLY"
  limit_amount = tostring(var.monthly_budget_usd)
  limit_unit   = "USD"

  # What the hub launches for its users, jobs and clusters: instances and their volumes carry the tag.
  cost_filter {
    name   = "TagKeyValue"
    values = [local.hub_tag_filter]
  }

  dynamic "notification" {
    for_each = local.budget_notifications

    content {
      notification_type          = notification.key
      threshold                  = notification.value
      threshold_type             = "PERCENTAGE"
      comparison_operator        = "GREATER_THAN"
      subscriber_email_addresses = var.alarm_emails
    }
  }

  tags = var.tags
}
