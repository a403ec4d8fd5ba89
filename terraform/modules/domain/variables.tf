variable "domain_name" {
  description = "The hub's domain, e.g. hub.example.org: the hub at https://<domain>/, each user's server at https://<user>.<domain>/."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name))
    error_message = "domain_name must be a lowercase DNS name without a trailing dot, e.g. hub.example.org."
  }
}

variable "zone_id" {
  description = "ID of the Route 53 hosted zone that holds domain_name (its records and the certificate's validation record go there)."
  type        = string

  validation {
    condition     = can(regex("^[A-Z0-9]+$", var.zone_id))
    error_message = "zone_id must be a Route 53 hosted zone ID (e.g. Z0123456789ABCDEFGHIJ, without /hostedzone/)."
  }
}

variable "alb_dns_name" {
  description = "DNS name of the hub's load balancer, which the domain and its wildcard point at."
  type        = string
}

variable "alb_zone_id" {
  description = "Route 53 zone ID of the hub's load balancer (for alias records)."
  type        = string
}

variable "tags" {
  description = "Tags of the certificate."
  type        = map(string)
  default     = {}
}
