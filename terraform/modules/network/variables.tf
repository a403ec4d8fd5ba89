variable "name" {
  description = "Name prefix of every resource of the network (the hub's name, e.g. `ec2hub`)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC. Default 10.60.0.0/16; the local cloud uses 127.0.0.0/16."
  type        = string
  default     = "10.60.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 24
    error_message = "vpc_cidr must be an IPv4 CIDR block of /24 or larger, e.g. 10.60.0.0/16."
  }
}

variable "azs" {
  description = "Availability zones of the subnets, one subnet of each kind per zone (at least 2), e.g. [\"eu-west-1a\", \"eu-west-1b\"]."
  type        = list(string)

  validation {
    condition     = length(var.azs) >= 2 && length(distinct(var.azs)) == length(var.azs)
    error_message = "azs must list at least 2 distinct availability zones."
  }
}

variable "private_subnet_cidrs" {
  description = "CIDR blocks of the private subnets (the hub and the user instances), one per zone in `azs`, inside `vpc_cidr`."
  type        = list(string)
  default     = ["10.60.0.0/20", "10.60.16.0/20"]

  validation {
    condition     = length(var.private_subnet_cidrs) >= 2 && alltrue([for c in var.private_subnet_cidrs : can(cidrnetmask(c))])
    error_message = "private_subnet_cidrs must hold at least 2 IPv4 CIDR blocks."
  }
}

variable "public_subnet_cidrs" {
  description = "CIDR blocks of the public subnets (the load balancer and the NAT gateway), one per zone in `azs`, inside `vpc_cidr`."
  type        = list(string)
  default     = ["10.60.240.0/24", "10.60.241.0/24"]

  validation {
    condition     = length(var.public_subnet_cidrs) >= 2 && alltrue([for c in var.public_subnet_cidrs : can(cidrnetmask(c))])
    error_message = "public_subnet_cidrs must hold at least 2 IPv4 CIDR blocks."
  }
}

variable "enable_nat_gateway" {
  description = "Whether private subnets reach the internet (package mirrors, the AWS APIs other than S3) through a NAT gateway (about 33 USD/month each plus traffic)."
  type        = bool
  default     = true
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper) instead of one per zone (survives the loss of a zone)."
  type        = bool
  default     = true
}

variable "flow_log_retention_days" {
  description = "Days to keep the VPC flow logs in CloudWatch Logs (one of the values CloudWatch accepts)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, ... 365, ... 3653)."
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
