variable "name" {
  description = "Name prefix of the log group, metric filter, alarms and alarm topic."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "hub_id" {
  description = "The hub's id (EC2HUB_HUB_ID): the HubId dimension of the metrics the hub's services publish, such as the jobs service's FailedRuns."
  type        = string

  validation {
    condition     = length(var.hub_id) >= 1 && length(var.hub_id) <= 255
    error_message = "hub_id must be 1 to 255 characters (a CloudWatch dimension value)."
  }
}

variable "log_group_name" {
  description = "Name of the hub's CloudWatch Logs group (the hub container logs to it)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_./#-]{1,512}$", var.log_group_name))
    error_message = "log_group_name must be a valid CloudWatch Logs group name."
  }
}

variable "log_retention_days" {
  description = "Days to keep the hub's log."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, ... 365, ... 3653)."
  }
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the hub's load balancer (the hub module's `alb_arn_suffix`); null (a hub without the module's load balancer) leaves out the hub-down alarm."
  type        = string
  default     = null

  validation {
    condition     = var.alb_arn_suffix == null || can(regex("^app/", coalesce(var.alb_arn_suffix, "app/")))
    error_message = "alb_arn_suffix must be an application load balancer's ARN suffix (app/NAME/ID)."
  }
}

variable "target_group_arn_suffix" {
  description = "ARN suffix of the hub's target group (the hub module's `target_group_arn_suffix`); null leaves out the hub-down alarm."
  type        = string
  default     = null

  validation {
    condition     = var.target_group_arn_suffix == null || can(regex("^targetgroup/", coalesce(var.target_group_arn_suffix, "targetgroup/")))
    error_message = "target_group_arn_suffix must be a target group's ARN suffix (targetgroup/NAME/ID)."
  }
}

variable "spawn_failure_threshold" {
  description = "Failed server starts within 15 minutes that raise the spawn-failures alarm."
  type        = number
  default     = 3

  validation {
    condition     = var.spawn_failure_threshold >= 1
    error_message = "spawn_failure_threshold must be at least 1."
  }
}

variable "max_running_vcpus" {
  description = "Running on-demand standard vCPUs in the region (AWS/Usage) above which the instance-count alarm fires: a guard against forgotten or runaway user instances."
  type        = number
  default     = 64

  validation {
    condition     = var.max_running_vcpus >= 1
    error_message = "max_running_vcpus must be at least 1."
  }
}

variable "alarm_emails" {
  description = "E-mail addresses subscribed to the alarm topic (each confirms by mail)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alarm_emails : can(regex("^[^@\\s]+@[^@\\s]+$", e))])
    error_message = "alarm_emails must be e-mail addresses."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.tags) : length(k) <= 128])
    error_message = "Tag keys must be at most 128 characters."
  }
}
