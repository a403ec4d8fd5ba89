output "budget_name" {
  description = "Name of the monthly budget on the hub's spend; null without monthly_budget_usd."
  value       = one(aws_budgets_budget.hub[*].name)
}

output "cost_allocation_tag_keys" {
  description = "The tag keys activated as cost allocation tags; empty with cost_allocation_tags = false."
  value       = sort(keys(aws_ce_cost_allocation_tag.this))
}
