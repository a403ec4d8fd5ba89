variable "name" {
  description = "Name of the deployment (the root module's `name`): the environment is `<name>-airflow`, its log groups `airflow-<name>-airflow-*`."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "account_id" {
  description = "ID of the account the environment runs in (its ARNs, the execution role's resources)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be a 12-digit AWS account ID."
  }
}

variable "bucket" {
  description = "Name of the DAGs bucket (MWAA's source bucket: dags/, requirements.txt, plugins.zip). Globally unique, e.g. `ec2hub-airflow-123456789012-eu-west-1`."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket)) && !can(regex("\\.\\.", var.bucket))
    error_message = "bucket must be a valid S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'."
  }
}

variable "force_destroy" {
  description = "Whether `terraform destroy` may delete the DAGs bucket with objects in it (the DAGs uploaded with `aws s3 sync` and every old version)."
  type        = bool
  default     = false
  nullable    = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days an overwritten or deleted DAG, requirements.txt or plugins.zip version is kept (MWAA needs versioning; old versions are only an undo)."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of days, at least 1."
  }
}

variable "kms_key_arn" {
  description = "ARN of a customer-managed KMS key for the DAGs bucket and the environment (MWAA wants one key for both; its key policy must let CloudWatch Logs use it for the airflow-* log groups). Null: the bucket uses SSE-S3 and the environment an AWS owned key."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:...) or null."
  }
}

variable "vpc_id" {
  description = "ID of the hub's VPC, where MWAA's workers get their network interfaces."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC ID (vpc-...)."
  }
}

variable "subnet_ids" {
  description = "The two private subnets (in two zones) of the environment, e.g. the hub's; they must reach the AWS APIs and PyPI (a NAT gateway)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) == 2 && alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "subnet_ids must be exactly 2 subnet IDs: MWAA runs in two private subnets."
  }
}

variable "hub_security_group_id" {
  description = "Security group of the hub instance: this module lets the environment's group reach it on `hub_ports`."
  type        = string

  validation {
    condition     = can(regex("^sg-[0-9a-f]+$", var.hub_security_group_id))
    error_message = "hub_security_group_id must be a security group ID (sg-...)."
  }
}

variable "hub_ports" {
  description = "What Airflow's tasks reach on the hub, by name: the hub's private API, the jobs service, the Dask gateway's HTTP and TCP proxies, e.g. `{ hub-api = 8081, jobs = 8187, gateway-http = 8183, gateway-tcp = 8184 }`."
  type        = map(number)

  validation {
    condition     = length(var.hub_ports) > 0 && alltrue([for name, port in var.hub_ports : can(regex("^[a-z][a-z0-9-]*$", name)) && port >= 1024 && port <= 65535 && floor(port) == port])
    error_message = "hub_ports must name (lowercase, digits, '-') at least one whole port number from 1024 to 65535."
  }
}

variable "webserver_allowed_cidrs" {
  description = "IPv4 ranges (a VPN, a bastion's subnet) that may open the Airflow UI at its private endpoint, on 443. Empty: nobody but the environment itself; the UI still wants an AWS sign-in (airflow:CreateWebLoginToken) on top."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for c in var.webserver_allowed_cidrs : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "webserver_allowed_cidrs must be IPv4 CIDR blocks, not 0.0.0.0/0 (the UI is private)."
  }
}

variable "connections_secret_prefix" {
  description = "The one Secrets Manager prefix Airflow reads connections from (`<prefix>/<conn_id>`, e.g. airflow/connections/ec2hub_default), and all the execution role may read of Secrets Manager. Variables and configuration are not read from Secrets Manager."
  type        = string
  default     = "airflow/connections"
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z0-9_+=.@-]+(/[A-Za-z0-9_+=.@-]+)*$", var.connections_secret_prefix))
    error_message = "connections_secret_prefix must be a Secrets Manager name prefix without a leading or trailing '/' and without wildcards, e.g. airflow/connections."
  }
}

variable "requirements" {
  description = "Lines of the environment's requirements.txt, which Terraform writes and the environment pins by version, e.g. the provider's wheel from plugins.zip: `[\"ec2hub-airflow[dask] @ file:///usr/local/airflow/plugins/ec2hub_airflow-0.1.0-py3-none-any.whl\"]`. MWAA adds Airflow's constraints file when no line names one."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for line in var.requirements : !can(regex("[\r\n]", line))])
    error_message = "requirements must hold one requirement per item, without line breaks."
  }
}

variable "plugins_zip" {
  description = "Path of a local plugins.zip that Terraform uploads and the environment pins by version (MWAA unpacks it in /usr/local/airflow/plugins), e.g. one holding the ec2hub-airflow wheel. Null: no plugins."
  type        = string
  default     = null

  validation {
    condition     = var.plugins_zip == null || can(regex("\\.zip$", coalesce(var.plugins_zip, "x.zip")))
    error_message = "plugins_zip must be the path of a .zip file, or null."
  }
}

variable "create_environment" {
  description = "Whether to create the MWAA environment itself (its fixed cost, about 0.49 USD/hour for mw1.small, runs from creation). False keeps the DAGs bucket, the execution role and the network rules, e.g. to stage DAGs and plugins first, or to pause Airflow without losing them."
  type        = bool
  default     = true
  nullable    = false
}

variable "airflow_version" {
  description = "Apache Airflow version of the environment: one MWAA offers in the region (see MWAA's \"Apache Airflow versions\" page) and that the ec2hub-airflow provider supports (its pyproject: apache-airflow>=3.3). Changing the major version replaces the environment."
  type        = string
  default     = "3.3.2"
  nullable    = false

  validation {
    condition     = can(regex("^3\\.[0-9]+\\.[0-9]+$", var.airflow_version))
    error_message = "airflow_version must be an Apache Airflow 3 version, e.g. 3.3.2: the ec2hub-airflow provider is written for Airflow 3."
  }
}

variable "environment_class" {
  description = "MWAA environment class: the size of its scheduler, web server and each worker. mw1.small runs about 50 DAGs."
  type        = string
  default     = "mw1.small"
  nullable    = false

  validation {
    condition     = contains(["mw1.micro", "mw1.small", "mw1.medium", "mw1.large", "mw1.xlarge", "mw1.2xlarge"], var.environment_class)
    error_message = "environment_class must be one of mw1.micro, mw1.small, mw1.medium, mw1.large, mw1.xlarge, mw1.2xlarge."
  }
}

variable "max_workers" {
  description = "Most Celery workers MWAA scales out to (one always runs). The heavy work runs on the hub's job and Dask instances, so Airflow's own workers mostly wait (deferrable operators wait in the triggerer, holding no worker slot)."
  type        = number
  default     = 2
  nullable    = false

  validation {
    condition     = var.max_workers >= 1 && var.max_workers <= 25 && floor(var.max_workers) == var.max_workers
    error_message = "max_workers must be a whole number from 1 to 25."
  }
}

variable "log_level" {
  description = "Level of the five Airflow logs MWAA writes to CloudWatch Logs (airflow-<environment>-Task, -Worker, -Scheduler, -DAGProcessing, -WebServer)."
  type        = string
  default     = "INFO"
  nullable    = false

  validation {
    condition     = contains(["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"], var.log_level)
    error_message = "log_level must be one of CRITICAL, ERROR, WARNING, INFO, DEBUG."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for k in keys(var.tags) : length(k) <= 128])
    error_message = "Tag keys must be at most 128 characters."
  }
}
