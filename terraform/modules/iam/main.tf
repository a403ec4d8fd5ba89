data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  # The policy documents are kept once, in the hub's package: the local cloud renders the same files
  # (hub/policies/__init__.py: lists go in as JSON).
  policy_dir = "${path.module}/../../../hub/policies"
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  policy_values = {
    region        = local.region
    account_id    = local.account_id
    hub_id        = var.hub_id
    bucket        = var.bucket
    boundary_name = var.boundary_name
  }
  # The hub launches only into these: its subnets, its groups (users and Dask clusters), its images,
  # the instance types of its sizes.
  hub_policy_values = merge(local.policy_values, {
    subnet_arns         = jsonencode([for id in var.subnet_ids : "arn:aws:ec2:${local.region}:${local.account_id}:subnet/${id}"])
    security_group_arns = jsonencode([for id in var.security_group_ids : "arn:aws:ec2:${local.region}:${local.account_id}:security-group/${id}"])
    image_arns          = jsonencode([for id in var.image_ids : "arn:aws:ec2:${local.region}::image/${id}"])
    instance_types      = jsonencode(sort(distinct(var.instance_types)))
  })
}

# One statement for every principal: the local cloud's IAM evaluation (moto) fails on a statement
# that names a service principal only, so the trusted principals join the EC2 one here.
data "aws_iam_policy_document" "hub_assume" {
  statement {
    sid     = "TheHubInstanceAndTrustedPrincipals"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }

    dynamic "principals" {
      for_each = length(var.trusted_principal_arns) > 0 ? [var.trusted_principal_arns] : []
      content {
        type        = "AWS"
        identifiers = principals.value
      }
    }
  }
}

resource "aws_iam_role" "hub" {
  name               = "${var.name}-hub"
  path               = "/ec2hub/"
  description        = "ec2hub: the hub (launches user instances, manages user roles)"
  assume_role_policy = data.aws_iam_policy_document.hub_assume.json

  tags = var.tags
}

# The roles the hub creates: IAM has no condition key that sees a new role's trust policy, so the
# policy cannot require that it trusts only EC2. It requires what IAM can check instead: the path
# /ec2hub/users/ and the user boundary on every role (the most it may do, whoever assumes it), PassRole
# only to EC2, and an explicit deny of UpdateAssumeRolePolicy, so that the trust the hub writes at
# creation (EC2's only, spawner/identity.py) is never changed.
resource "aws_iam_role_policy" "hub" {
  name   = "ec2hub-hub"
  role   = aws_iam_role.hub.id
  policy = templatefile("${local.policy_dir}/hub-policy.json", local.hub_policy_values)
}

data "aws_iam_policy_document" "hub_logs" {
  statement {
    sid       = "WriteTheHubLog"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["arn:${data.aws_partition.current.partition}:logs:${local.region}:${local.account_id}:log-group:${var.log_group_name}:*"]
  }
}

resource "aws_iam_role_policy" "hub_logs" {
  name   = "ec2hub-hub-logs"
  role   = aws_iam_role.hub.id
  policy = data.aws_iam_policy_document.hub_logs.json
}

# Session Manager's agent needs these (AWS's minimal Session Manager permissions), none of which reads
# data. Not AmazonSSMManagedInstanceCore: it also grants ssm:GetParameter(s) on every parameter, the
# users' server tokens among them.
data "aws_iam_policy_document" "hub_session_manager" {
  statement {
    sid       = "SessionManagerAgentRegistersItsInstance"
    actions   = ["ssm:UpdateInstanceInformation"]
    resources = ["arn:${data.aws_partition.current.partition}:ec2:${local.region}:${local.account_id}:instance/*"]
  }

  statement {
    sid = "SessionManagerAgentChannels"
    actions = [
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "hub_session_manager" {
  count = var.enable_session_manager ? 1 : 0

  name   = "ec2hub-hub-session-manager"
  role   = aws_iam_role.hub.id
  policy = data.aws_iam_policy_document.hub_session_manager.json
}

# The hub's secrets (the hub module's SSM parameters): the hub reads exactly these at start.
data "aws_iam_policy_document" "hub_secrets" {
  count = length(var.secret_parameter_arns) > 0 ? 1 : 0

  statement {
    sid       = "ReadTheHubsSecrets"
    actions   = ["ssm:GetParameter"]
    resources = var.secret_parameter_arns
  }

  dynamic "statement" {
    for_each = var.secrets_kms_key_arn != null ? [var.secrets_kms_key_arn] : []
    content {
      sid       = "DecryptTheHubsSecretsThroughSsm"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["ssm.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "hub_secrets" {
  count = length(var.secret_parameter_arns) > 0 ? 1 : 0

  name   = "ec2hub-hub-secrets"
  role   = aws_iam_role.hub.id
  policy = data.aws_iam_policy_document.hub_secrets[0].json
}

resource "aws_iam_role_policy_attachment" "ecr_read_only" {
  count = var.attach_ecr_read_only ? 1 : 0

  role       = aws_iam_role.hub.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
}

resource "aws_iam_instance_profile" "hub" {
  name = "${var.name}-hub"
  path = "/ec2hub/"
  role = aws_iam_role.hub.name

  tags = var.tags
}

resource "aws_iam_policy" "user_boundary" {
  name        = var.boundary_name
  description = "ec2hub: the most any user role may do"
  policy      = templatefile("${local.policy_dir}/user-boundary.json", local.policy_values)

  tags = var.tags
}
