variable "region" {
  description = "AWS region to deploy the hub in."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name, e.g. us-east-1."
  }
}

variable "user_ami_id" {
  description = "AMI of user instances, built with images/packer (`packer build images/packer`)."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]+$", var.user_ami_id))
    error_message = "user_ami_id must be an AMI id (ami-...)."
  }
}

variable "domain_name" {
  description = "The hub's domain (e.g. hub.example.org), in the Route 53 zone route53_zone_id; users' servers are served at <user>.<domain>."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name))
    error_message = "domain_name must be a lowercase DNS name without a trailing dot, e.g. hub.example.org."
  }
}

variable "route53_zone_id" {
  description = "ID of the Route 53 hosted zone that holds domain_name."
  type        = string

  validation {
    condition     = can(regex("^[A-Z0-9]+$", var.route53_zone_id))
    error_message = "route53_zone_id must be a Route 53 hosted zone ID (e.g. Z0123456789ABCDEFGHIJ, without /hostedzone/)."
  }
}

variable "hub_image" {
  description = "The hub's container image (the repository's Dockerfile pushed to ECR)."
  type        = string

  validation {
    condition     = length(var.hub_image) > 0
    error_message = "hub_image must not be empty."
  }
}

variable "allowed_cidrs" {
  description = "IPv4 ranges that may open the hub."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(cidrnetmask(c))])
    error_message = "allowed_cidrs must hold IPv4 CIDR blocks."
  }
}

variable "alarm_emails" {
  description = "E-mail addresses that receive the alarms."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alarm_emails : can(regex("^[^@\\s]+@[^@\\s]+$", e))])
    error_message = "alarm_emails must be e-mail addresses."
  }
}

variable "hub_proxy_auth_token" {
  description = "The token between the hub and its proxy, e.g. `export TF_VAR_hub_proxy_auth_token=$(openssl rand -hex 32)`; never in a file of the repository. Ephemeral: give it at every plan and apply."
  type        = string
  sensitive   = true
  ephemeral   = true
}
