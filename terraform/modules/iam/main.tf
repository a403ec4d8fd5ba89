data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  # The policy documents are kept once, in the hub's package: the local cloud renders the same files.
  policy_dir = "${path.module}/../../../hub/policies"
  policy_values = {
    region        = data.aws_region.current.name
    account_id    = data.aws_caller_identity.current.account_id
    hub_id        = var.hub_id
    bucket        = var.bucket
    boundary_name = var.boundary_name
  }
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

resource "aws_iam_role_policy" "hub" {
  name   = "ec2hub-hub"
  role   = aws_iam_role.hub.id
  policy = templatefile("${local.policy_dir}/hub-policy.json", local.policy_values)
}

data "aws_iam_policy_document" "hub_logs" {
  statement {
    sid       = "WriteTheHubLog"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["arn:${data.aws_partition.current.partition}:logs:${local.policy_values.region}:${local.policy_values.account_id}:log-group:${var.log_group_name}:*"]
  }
}

resource "aws_iam_role_policy" "hub_logs" {
  name   = "ec2hub-hub-logs"
  role   = aws_iam_role.hub.id
  policy = data.aws_iam_policy_document.hub_logs.json
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  count = var.attach_ssm_managed_instance_core ? 1 : 0

  role       = aws_iam_role.hub.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
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
