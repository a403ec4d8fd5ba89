variable "name" {
  description = "Name prefix of the hub's load balancer, instance, volume and security groups."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,24}$", var.name))
    error_message = "name must be 2-25 characters (load balancer names are short): lowercase letters, digits and '-'."
  }
}

variable "vpc_id" {
  description = "ID of the VPC (the network module's `vpc_id`)."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id (vpc-...)."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets: the hub runs in the first; user instances in all of them."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "private_subnet_ids must hold at least 2 subnet ids (subnet-...)."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets of the load balancer (at least 2 zones)."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2 && alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "public_subnet_ids must hold at least 2 subnet ids (subnet-...)."
  }
}

variable "create_instance" {
  description = "Whether to create the hub instance, its database volume and load balancer; false creates only the security groups (for a hub that runs elsewhere, e.g. the local cloud's tests)."
  type        = bool
  default     = true
}

variable "certificate_arn" {
  description = "ARN of the ACM certificate of the hub's domain; the load balancer serves HTTPS with it. Required with create_instance."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", coalesce(var.certificate_arn, "-")))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/...)."
  }
}

variable "allowed_cidrs" {
  description = "IPv4 ranges that may reach the hub's HTTPS endpoint (your office or VPN; 0.0.0.0/0 for everyone)."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrnetmask(c))])
    error_message = "allowed_cidrs must hold at least one IPv4 CIDR block."
  }
}

variable "hub_ami_id" {
  description = "AMI of the hub instance; null picks the latest Amazon Linux 2023 (x86_64) from its public SSM parameter."
  type        = string
  default     = null

  validation {
    condition     = var.hub_ami_id == null || can(regex("^ami-[0-9a-f]+$", var.hub_ami_id))
    error_message = "hub_ami_id must be an AMI id (ami-...) or null."
  }
}

variable "instance_type" {
  description = "Instance type of the hub (it runs JupyterHub and the proxy, not users' work). t3.small: 2 vCPU, 2 GiB, about 15 USD/month."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like an EC2 instance type, e.g. t3.small."
  }
}

variable "instance_profile_name" {
  description = "Instance profile of the hub (the iam module's `hub_instance_profile_name`)."
  type        = string

  validation {
    condition     = length(var.instance_profile_name) > 0
    error_message = "instance_profile_name must not be empty."
  }
}

variable "hub_image" {
  description = "Container image of the hub, built from the repository's Dockerfile and pushed to a registry the hub can pull from (e.g. ECR). Required with create_instance."
  type        = string
  default     = null

  validation {
    condition     = var.hub_image == null || !can(regex("\\s", coalesce(var.hub_image, "-")))
    error_message = "hub_image must be an image reference such as 123456789012.dkr.ecr.eu-west-1.amazonaws.com/ec2hub:0.1.0."
  }
}

variable "hub_environment" {
  description = "EC2HUB_* variables of the hub container (the root module's `hub_environment`); this module adds EC2HUB_SECURITY_GROUP_IDS (its user and cluster groups), the Dask gateway ports and the jobs port. Secrets do not belong here."
  type        = map(string)

  validation {
    condition     = alltrue([for k in keys(var.hub_environment) : can(regex("^EC2HUB_[A-Z0-9_]+$", k))])
    error_message = "hub_environment keys must be EC2HUB_* variable names."
  }

  # The hub's environment is in its user-data, readable by whoever may describe the instance.
  validation {
    condition     = !anytrue([for k in keys(var.hub_environment) : can(regex("(PASSWORD|SECRET|TOKEN|_KEY|DATABASE_URL)$", k))])
    error_message = "hub_environment must hold no secret (a name ending in PASSWORD, SECRET, TOKEN, _KEY or DATABASE_URL): pass secrets as the hub's secret variables, which go to SSM Parameter Store."
  }

  validation {
    condition     = alltrue([for v in values(var.hub_environment) : !can(regex("[\\r\\n]", v))])
    error_message = "hub_environment values must be single lines."
  }
}

variable "secrets" {
  description = "The hub's secrets, each stored in an SSM SecureString parameter that only the hub's role reads: oauth_client_secret (EC2HUB_OAUTH_CLIENT_SECRET), ldap_search_password (EC2HUB_LDAP_SEARCH_PASSWORD), proxy_auth_token (EC2HUB_PROXY_AUTH_TOKEN), database_url (EC2HUB_DATABASE_URL). Ephemeral: the values reach neither the plan nor the state. Only those listed in parameter_versions are stored."
  type = object({
    oauth_client_secret  = optional(string)
    ldap_search_password = optional(string)
    proxy_auth_token     = optional(string)
    database_url         = optional(string)
  })
  default   = {}
  sensitive = true
  ephemeral = true
}

variable "parameter_versions" {
  description = "Which of `secrets` this deployment stores, each with the version of its value (e.g. `{ oauth_client_secret = 1 }`): Terraform writes a value only when its version changes, since it keeps no copy to compare with."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.parameter_versions) : contains(["oauth_client_secret", "ldap_search_password", "proxy_auth_token", "database_url"], k)])
    error_message = "parameter_versions keys must be among oauth_client_secret, ldap_search_password, proxy_auth_token and database_url."
  }

  validation {
    condition     = alltrue([for v in values(var.parameter_versions) : v >= 1 && floor(v) == v])
    error_message = "parameter_versions values must be whole numbers from 1."
  }
}

variable "log_group_name" {
  description = "CloudWatch Logs group the hub container logs to (the monitoring module creates it)."
  type        = string

  validation {
    condition     = length(var.log_group_name) > 0
    error_message = "log_group_name must not be empty."
  }
}

variable "database_volume_size" {
  description = "Size in GiB of the encrypted EBS volume that holds the hub's database and state (users, approvals, server state)."
  type        = number
  default     = 10

  validation {
    condition     = var.database_volume_size >= 1 && var.database_volume_size <= 1024
    error_message = "database_volume_size must be between 1 and 1024 GiB."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the hub's disks; null uses the AWS-managed EBS key (encrypted either way)."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN or null."
  }
}

variable "snapshot_retention_count" {
  description = "How many daily snapshots of the hub's database volume to keep."
  type        = number
  default     = 7

  validation {
    condition     = var.snapshot_retention_count >= 1 && var.snapshot_retention_count <= 1000
    error_message = "snapshot_retention_count must be between 1 and 1000."
  }
}

variable "deletion_protection" {
  description = "Whether the load balancer is protected from deletion (turn off before `terraform destroy`)."
  type        = bool
  default     = true
}

variable "user_server_port" {
  description = "Port of the single-user servers on user instances (the spawner's port); only the hub may reach it."
  type        = number
  default     = 8888

  validation {
    condition     = var.user_server_port > 0 && var.user_server_port < 65536
    error_message = "user_server_port must be a port number."
  }
}

variable "gateway_ports" {
  description = "Ports of the Dask gateway on the hub, opened to user instances: `http` (EC2HUB_GATEWAY_PORT) is its API, which user servers call and schedulers send heartbeats to, and its dashboards; `tcp` (EC2HUB_GATEWAY_TCP_PORT) is its TCP proxy, through which user servers reach their clusters' schedulers. Defaults 8183 and 8184 (the hub API port + 102 and + 103)."
  type = object({
    http = optional(number, 8183)
    tcp  = optional(number, 8184)
  })
  default = {}

  validation {
    condition     = alltrue([for p in values(var.gateway_ports) : p >= 1024 && p <= 65535 && floor(p) == p]) && var.gateway_ports.http != var.gateway_ports.tcp
    error_message = "gateway_ports must be two different whole port numbers from 1024 to 65535."
  }
}

variable "jobs_port" {
  description = "Port of the jobs service on the hub (EC2HUB_JOBS_PORT), opened to user instances: user servers submit notebook jobs there and job instances report their runs. Default 8187 (the hub API port + 106)."
  type        = number
  default     = 8187

  validation {
    condition     = var.jobs_port >= 1024 && var.jobs_port <= 65535 && floor(var.jobs_port) == var.jobs_port
    error_message = "jobs_port must be a whole port number from 1024 to 65535."
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
