variable "name" {
  description = "Name of this deployment: prefix of every resource (e.g. `ec2hub` gives the role `ec2hub-hub`)."
  type        = string
  default     = "ec2hub"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,24}$", var.name))
    error_message = "name must be 2-25 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "hub_id" {
  description = "The `ec2hub:hub` tag of every user instance this hub launches (EC2HUB_HUB_ID); null uses `name`."
  type        = string
  default     = null

  validation {
    condition     = var.hub_id == null || can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", var.hub_id))
    error_message = "hub_id must be 1-63 letters, digits, '_', '.' or '-'."
  }
}

variable "azs" {
  description = "Availability zones of the subnets (at least 2); empty picks the region's first two."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.azs) == 0 || length(var.azs) >= 2
    error_message = "azs must be empty (automatic) or list at least 2 zones."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC."
  type        = string
  default     = "10.60.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR block."
  }
}

variable "private_subnet_cidrs" {
  description = "CIDR blocks of the private subnets (hub and user instances), one per zone. /20 leaves room for 4,000 user instances per zone."
  type        = list(string)
  default     = ["10.60.0.0/20", "10.60.16.0/20"]

  validation {
    condition     = length(var.private_subnet_cidrs) >= 2 && alltrue([for c in var.private_subnet_cidrs : can(cidrnetmask(c))])
    error_message = "private_subnet_cidrs must hold at least 2 IPv4 CIDR blocks."
  }
}

variable "public_subnet_cidrs" {
  description = "CIDR blocks of the public subnets (load balancer, NAT gateway), one per zone."
  type        = list(string)
  default     = ["10.60.240.0/24", "10.60.241.0/24"]

  validation {
    condition     = length(var.public_subnet_cidrs) >= 2 && alltrue([for c in var.public_subnet_cidrs : can(cidrnetmask(c))])
    error_message = "public_subnet_cidrs must hold at least 2 IPv4 CIDR blocks."
  }
}

variable "enable_nat_gateway" {
  description = "Whether the private subnets reach the internet through a NAT gateway (pip/conda installs on user instances, AWS APIs other than S3)."
  type        = bool
  default     = true
}

variable "bucket" {
  description = "Name of the data bucket; null uses `<name>-data-<account id>-<region>`."
  type        = string
  default     = null

  validation {
    condition     = var.bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "bucket must be a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')."
  }
}

variable "bucket_force_destroy" {
  description = "Whether `terraform destroy` may delete the bucket with users' data in it. Keep false in production."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days an overwritten or deleted object version is kept (users' undo)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "user_ami_id" {
  description = "AMI of the user instances, built with images/packer (`packer build images/packer`) (EC2HUB_AMI_ID)."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]+$", var.user_ami_id))
    error_message = "user_ami_id must be an AMI id (ami-...): build it with Packer first."
  }
}

variable "user_instance_type" {
  description = "Default instance type of user servers (EC2HUB_INSTANCE_TYPE); t3.medium: 2 vCPU, 4 GiB, about 0.042 USD/hour."
  type        = string
  default     = "t3.medium"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.user_instance_type))
    error_message = "user_instance_type must look like an EC2 instance type, e.g. t3.medium."
  }
}

variable "user_instance_types" {
  description = "Instance types of the hub's sizes (c.EC2Spawner.profiles): the hub's role may launch these and user_instance_type, nothing else. The default is the types of the default sizes (spawner/profiles.py); list your own when you change the sizes."
  type        = list(string)
  default     = ["g5.xlarge", "m6i.4xlarge", "m6i.xlarge", "t3.medium"]

  validation {
    condition     = length(var.user_instance_types) > 0 && alltrue([for t in var.user_instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "user_instance_types must hold at least one EC2 instance type, e.g. t3.medium."
  }
}

variable "boundary_name" {
  description = "Name of the managed policy that bounds every user role."
  type        = string
  default     = "ec2hub-user-boundary"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,128}$", var.boundary_name))
    error_message = "boundary_name must be a valid IAM policy name."
  }
}

variable "trusted_principal_arns" {
  description = "Principals besides EC2 that may assume the hub's role (break-glass, or tests that run the hub off EC2). Empty in production."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.trusted_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:", arn))])
    error_message = "trusted_principal_arns must be IAM ARNs."
  }
}

variable "create_hub_instance" {
  description = "Whether to create the hub instance, its load balancer and database volume; false deploys network, bucket, IAM, security groups and monitoring only (to build the AMI first, or for a hub that runs elsewhere)."
  type        = bool
  default     = true
}

variable "domain_name" {
  description = "The hub's domain (e.g. hub.example.org) in the Route 53 zone `route53_zone_id`. Terraform then creates a certificate for it and *.<domain> (DNS-validated), points both at the load balancer, and serves each user's server on its own host (https://<user>.<domain>, EC2HUB_SUBDOMAIN_HOST): use it whenever the hub's users are not all trusted admins. Null: bring `certificate_arn` and a DNS record yourself, and every server shares the hub's origin."
  type        = string
  default     = null

  validation {
    condition     = var.domain_name == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", coalesce(var.domain_name, "x.y")))
    error_message = "domain_name must be a lowercase DNS name without a trailing dot, e.g. hub.example.org."
  }
}

variable "route53_zone_id" {
  description = "ID of the Route 53 hosted zone that holds `domain_name`; required with it."
  type        = string
  default     = null

  validation {
    condition     = var.route53_zone_id == null || can(regex("^[A-Z0-9]+$", coalesce(var.route53_zone_id, "Z0")))
    error_message = "route53_zone_id must be a Route 53 hosted zone ID (e.g. Z0123456789ABCDEFGHIJ, without /hostedzone/)."
  }
}

variable "certificate_arn" {
  description = "ACM certificate ARN of the hub's domain (HTTPS on the load balancer), when `domain_name` is not given (with it, Terraform makes the certificate). Required when create_hub_instance is true and domain_name is null."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "allowed_cidrs" {
  description = "IPv4 ranges that may open the hub (HTTPS)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrnetmask(c))])
    error_message = "allowed_cidrs must hold at least one IPv4 CIDR block."
  }
}

variable "hub_image" {
  description = "Container image of the hub (the repository's Dockerfile, pushed to ECR). Required when create_hub_instance is true."
  type        = string
  default     = null

  validation {
    condition     = var.hub_image == null || !can(regex("\\s", coalesce(var.hub_image, "x")))
    error_message = "hub_image must be an image reference without spaces."
  }
}

variable "hub_ami_id" {
  description = "AMI of the hub instance; null uses the latest Amazon Linux 2023."
  type        = string
  default     = null

  validation {
    condition     = var.hub_ami_id == null || can(regex("^ami-[0-9a-f]+$", coalesce(var.hub_ami_id, "ami-0")))
    error_message = "hub_ami_id must be an AMI id or null."
  }
}

variable "hub_instance_type" {
  description = "Instance type of the hub."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.hub_instance_type))
    error_message = "hub_instance_type must look like an EC2 instance type."
  }
}

variable "hub_deletion_protection" {
  description = "Whether the hub's load balancer is protected from deletion."
  type        = bool
  default     = true
}

variable "hub_environment" {
  description = "More EC2HUB_* settings of the hub (sign-in method, admin user, LDAP or OAuth settings without secrets)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.hub_environment) : can(regex("^EC2HUB_[A-Z0-9_]+$", k))])
    error_message = "hub_environment keys must be EC2HUB_* names."
  }
}

# The hub's secrets: ephemeral, so that they reach neither the plan nor the state; set them with
# TF_VAR_hub_oauth_client_secret=... or a tfvars file kept outside the repository, at every plan and apply
# that writes them. Terraform stores each in an SSM SecureString parameter that only the hub's role reads.

variable "hub_oauth_client_secret" {
  description = "The OAuth client secret of the hub at its identity provider (EC2HUB_OAUTH_CLIENT_SECRET), with EC2HUB_AUTH = \"oauth\". Stored when hub_parameter_versions lists oauth_client_secret."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "hub_ldap_search_password" {
  description = "The password of the LDAP account the hub searches with (EC2HUB_LDAP_SEARCH_PASSWORD, with EC2HUB_LDAP_SEARCH_USER_DN). Stored when hub_parameter_versions lists ldap_search_password."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "hub_proxy_auth_token" {
  description = "The token between the hub and configurable-http-proxy (EC2HUB_PROXY_AUTH_TOKEN), e.g. `openssl rand -hex 32`; without it the hub makes a new one at each start. Stored when hub_parameter_versions lists proxy_auth_token."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "hub_database_url" {
  description = "The hub's database URL when it holds a password, e.g. postgresql://hub:PASSWORD@HOST/jupyterhub (EC2HUB_DATABASE_URL); without it the hub keeps SQLite on its database volume. Stored when hub_parameter_versions lists database_url."
  type        = string
  default     = null
  sensitive   = true
  ephemeral   = true
}

variable "hub_parameter_versions" {
  description = "Which of the hub's secrets to store, each with the version of its value, e.g. `{ oauth_client_secret = 1, proxy_auth_token = 1 }`: Terraform keeps no copy of a secret to compare with, so it writes one again only when its number changes (bump it with a new value)."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.hub_parameter_versions) : contains(["oauth_client_secret", "ldap_search_password", "proxy_auth_token", "database_url"], k)])
    error_message = "hub_parameter_versions keys must be among oauth_client_secret, ldap_search_password, proxy_auth_token and database_url."
  }
}

variable "gateway_ports" {
  description = "Ports of the Dask gateway on the hub, which user instances reach: `http` (EC2HUB_GATEWAY_PORT, its API and dashboards, default 8183) and `tcp` (EC2HUB_GATEWAY_TCP_PORT, its proxy to schedulers, default 8184)."
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
  description = "Port of the jobs service on the hub (EC2HUB_JOBS_PORT, default 8187: the hub API port + 106), which user servers and job instances reach to submit notebook jobs and report their runs."
  type        = number
  default     = 8187

  validation {
    condition     = var.jobs_port >= 1024 && var.jobs_port <= 65535 && floor(var.jobs_port) == var.jobs_port
    error_message = "jobs_port must be a whole port number from 1024 to 65535."
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

variable "cost_allocation_tags" {
  description = "Whether to activate the tags `ec2hub:hub`, `ec2hub:user`, `ec2hub:purpose` (on every instance the hub launches) and `ec2hub:deployment` (on Terraform's resources) as AWS cost allocation tags, for Cost Explorer, the Cost and Usage Report and the budget. AWS activates a key only after it has appeared in billing data once (up to a day after a resource first carried it), so the default is false: switch it on a day after users have started servers (an apply before that fails on these resources alone). Activation is account-wide (the management account's, in an organization) and shared by every hub in the account; destroying deactivates the keys for all of them."
  type        = bool
  default     = false
}

variable "monthly_budget_usd" {
  description = "Monthly AWS Budgets limit, in USD, on the hub's spend: the cost of what carries `ec2hub:hub = <hub_id>` (user, job and cluster instances and their volumes). It mails alarm_emails at 80 % of the limit spent and at 100 % forecast. Null (default): no budget. The budget counts only once `ec2hub:hub` is an active cost allocation tag (cost_allocation_tags)."
  type        = number
  default     = null

  validation {
    condition     = var.monthly_budget_usd == null || coalesce(var.monthly_budget_usd, 1) > 0
    error_message = "monthly_budget_usd must be greater than 0, or null for no budget."
  }
}

variable "tags" {
  description = "Tags added to every resource (the module adds `ec2hub:deployment = <name>`)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.tags) : length(k) <= 128])
    error_message = "Tag keys must be at most 128 characters."
  }
}

variable "mwaa_enabled" {
  description = "Whether to deploy Amazon MWAA for the ec2hub Airflow provider (pipelines/): a DAGs bucket, an execution role without access to users' data, a security group that reaches the hub's API, jobs and Dask gateway ports, and the environment. Off by default: an environment costs from creation, whether DAGs run or not (mw1.small about 0.49 USD/hour, some 360 USD/month, in us-east-1). Needs enable_nat_gateway (MWAA reaches its AWS services and PyPI through it)."
  type        = bool
  default     = false
  nullable    = false

  validation {
    condition     = !var.mwaa_enabled || var.enable_nat_gateway
    error_message = "mwaa_enabled needs enable_nat_gateway = true: MWAA in the private subnets reaches SQS, CloudWatch, KMS, Secrets Manager and PyPI through the NAT gateway."
  }
}

variable "mwaa" {
  description = "Settings of MWAA when mwaa_enabled (unset ones take modules/mwaa's defaults): `create_environment` (false keeps the bucket, role and network rules without the environment and its cost), `airflow_version` (an Airflow 3 version MWAA offers, default 3.3.2), `environment_class` (default mw1.small), `max_workers` (default 2), `requirements` (lines of requirements.txt, e.g. the ec2hub-airflow wheel in plugins.zip), `plugins_zip` (path of a local plugins.zip to upload), `webserver_allowed_cidrs` (ranges, e.g. a VPN, that may open the private Airflow UI), `connections_secret_prefix` (default airflow/connections)."
  type = object({
    create_environment        = optional(bool)
    airflow_version           = optional(string)
    environment_class         = optional(string)
    max_workers               = optional(number)
    requirements              = optional(list(string))
    plugins_zip               = optional(string)
    webserver_allowed_cidrs   = optional(list(string))
    connections_secret_prefix = optional(string)
  })
  default  = {}
  nullable = false
}
