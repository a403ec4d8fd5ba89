variable "name" {
  description = "Name prefix of the budget (`<name>-hub-monthly`)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "hub_id" {
  description = "The hub's id (EC2HUB_HUB_ID): the value of the `ec2hub:hub` tag the budget counts."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", var.hub_id))
    error_message = "hub_id must be 1-63 letters, digits, '_', '.' or '-'."
  }
}

variable "account_id" {
  description = "ID of the account the budget belongs to (the deployment's account)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be a 12-digit AWS account ID."
  }
}

variable "cost_allocation_tags" {
  description = "Whether to activate `ec2hub:hub`, `ec2hub:user`, `ec2hub:purpose` and `ec2hub:deployment` as cost allocation tags, so that Cost Explorer, the Cost and Usage Report and budgets can group and filter by them. AWS activates a key only once it has appeared in billing data (up to a day after a resource first carried it): set false for the first apply in a new account. Activation is account-wide (the management account's, in an organization) and shared by every hub in it; destroying deactivates the keys for all of them."
  type        = bool
  default     = true
}

variable "monthly_budget_usd" {
  description = "Monthly AWS Budgets limit, in USD, on the cost of what carries `ec2hub:hub = <hub_id>` (user, job and cluster instances and their volumes); it mails alarm_emails at 80 % spent and at 100 % forecast. Null: no budget. The budget counts only once `ec2hub:hub` is an active cost allocation tag."
  type        = number
  default     = null

  validation {
    condition     = var.monthly_budget_usd == null || coalesce(var.monthly_budget_usd, 1) > 0
    error_message = "monthly_budget_usd must be greater than 0, or null for no budget."
  }
}

variable "alarm_emails" {
  description = "E-mail addresses the budget notifies; empty: a budget without notifications."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alarm_emails : can(regex("^[^@\\s]+@[^@\\s]+$", e))])
    error_message = "alarm_emails must be e-mail addresses."
  }
}

variable "tags" {
  description = "Tags added to the budget."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.tags) : length(k) <= 128])
    error_message = "Tag keys must be at most 128 characters."
  }
}
