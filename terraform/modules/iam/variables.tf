variable "name" {
  description = "Name prefix of the hub's role, policy and instance profile (e.g. `ec2hub` gives the role `ec2hub-hub`)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "hub_id" {
  description = "The hub's id: the value of the `ec2hub:hub` tag the hub may launch and manage instances with (EC2HUB_HUB_ID)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", var.hub_id))
    error_message = "hub_id must be 1-63 letters, digits, '_', '.' or '-'."
  }
}

variable "bucket" {
  description = "Name of the data bucket the user boundary is limited to."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "bucket must be a valid S3 bucket name."
  }
}

variable "boundary_name" {
  description = "Name of the managed policy that is the permissions boundary of every user role (the hub may create roles only with it)."
  type        = string
  default     = "ec2hub-user-boundary"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,128}$", var.boundary_name))
    error_message = "boundary_name must be a valid IAM policy name (1-128 of A-Z a-z 0-9 +=,.@_-)."
  }
}

variable "log_group_name" {
  description = "CloudWatch Logs group the hub writes its log to (its role may create streams and put events there only)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_./#-]{1,512}$", var.log_group_name))
    error_message = "log_group_name must be a valid CloudWatch Logs group name."
  }
}

variable "trusted_principal_arns" {
  description = "IAM principals (besides EC2) that may assume the hub's role, e.g. a break-glass operator role, or the test account's admin when the hub runs off EC2. Empty in production."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.trusted_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(root|user/.+|role/.+)$", arn))])
    error_message = "trusted_principal_arns must be IAM user, role or account-root ARNs."
  }
}

variable "enable_session_manager" {
  description = "Whether the hub's role gets the Session Manager agent's permissions, so operators reach the hub with Session Manager instead of SSH (not AmazonSSMManagedInstanceCore, which reads every SSM parameter)."
  type        = bool
  default     = true
}

variable "subnet_ids" {
  description = "Subnets the hub may launch user instances into (EC2HUB_SUBNET_IDS)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must hold at least one subnet id (subnet-...)."
  }
}

variable "security_group_ids" {
  description = "Security groups the hub may launch instances with: the user group (EC2HUB_SECURITY_GROUP_IDS) and the Dask cluster group (EC2HUB_CLUSTER_SECURITY_GROUP_IDS)."
  type        = list(string)

  validation {
    condition     = length(var.security_group_ids) > 0 && alltrue([for g in var.security_group_ids : can(regex("^sg-[0-9a-f]+$", g))])
    error_message = "security_group_ids must hold at least one security group id (sg-...)."
  }
}

variable "image_ids" {
  description = "AMIs the hub may launch instances from (EC2HUB_AMI_ID)."
  type        = list(string)

  validation {
    condition     = length(var.image_ids) > 0 && alltrue([for i in var.image_ids : can(regex("^ami-[0-9a-f]+$", i))])
    error_message = "image_ids must hold at least one AMI id (ami-...)."
  }
}

variable "instance_types" {
  description = "Instance types the hub may launch: those of its sizes (c.EC2Spawner.profiles) and of a server started without a size (EC2HUB_INSTANCE_TYPE)."
  type        = list(string)

  validation {
    condition     = length(var.instance_types) > 0 && alltrue([for t in var.instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "instance_types must hold at least one EC2 instance type, e.g. t3.medium."
  }
}

variable "secret_parameter_arns" {
  description = "ARNs of the SSM parameters holding the hub's secrets (the hub module's `secret_parameter_arns`): the hub's role may read exactly these."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.secret_parameter_arns : can(regex("^arn:aws[a-z-]*:ssm:[a-z0-9-]+:[0-9]{12}:parameter/", arn))])
    error_message = "secret_parameter_arns must be SSM parameter ARNs."
  }
}

variable "secrets_kms_key_arn" {
  description = "Customer-managed KMS key of the secret parameters, which the hub's role may then decrypt through SSM; null when they use the AWS-managed aws/ssm key."
  type        = string
  default     = null

  validation {
    condition     = var.secrets_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", coalesce(var.secrets_kms_key_arn, "-")))
    error_message = "secrets_kms_key_arn must be a KMS key ARN or null."
  }
}

variable "attach_ecr_read_only" {
  description = "Whether the hub's role may pull images from ECR (AmazonEC2ContainerRegistryReadOnly), for a hub image pushed there."
  type        = bool
  default     = true
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
