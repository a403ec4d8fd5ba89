# Amazon MWAA for the ec2hub Airflow provider (pipelines/): Airflow schedules, and every task's work
# runs on the hub as the pipeline's owner (a job or a Dask cluster, through the hub's API with the
# owner's token from the connection in Secrets Manager). So MWAA needs its DAGs bucket, the network
# path to the hub's ports, and an execution role with no reach into the users' data.

data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition        = data.aws_partition.current.partition
  region           = data.aws_region.current.name
  environment_name = "${var.name}-airflow"
  environment_arn  = "arn:${local.partition}:airflow:${local.region}:${var.account_id}:environment/${local.environment_name}"
  # Built from the name, not read from the bucket resource, so that the role's policy is known at plan.
  bucket_arn = "arn:${local.partition}:s3:::${var.bucket}"

  # The keys MWAA reads from its source bucket.
  dag_s3_path          = "dags"
  requirements_s3_path = "requirements.txt"
  plugins_s3_path      = "plugins.zip"

  # MWAA's own services: its metadata database (PostgreSQL, through a VPC endpoint in this group) and
  # its web server and the workers' internal calls (HTTPS), among the members of the group.
  mwaa_internal_ports = { postgresql = 5432, https = 443 }

  # Airflow reads connections (and nothing else) from Secrets Manager: variables_prefix and
  # config_prefix null turn those lookups off, so the role needs to read one prefix only.
  airflow_configuration_options = {
    "secrets.backend" = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
    "secrets.backend_kwargs" = jsonencode({
      connections_prefix = var.connections_secret_prefix
      variables_prefix   = null
      config_prefix      = null
    })
  }
}

# --- the DAGs bucket: dags/, requirements.txt, plugins.zip ---

resource "aws_s3_bucket" "dags" {
  #checkov:skip=CKV_AWS_18:Server access logs would need a second bucket; who changed a DAG is in CloudTrail, and what a DAG is lives in the repository (pipelines/dags).
  #checkov:skip=CKV_AWS_144:Cross-region replication of copies: the DAGs come from the repository and requirements.txt and plugins.zip from Terraform, so a lost region loses nothing.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events; MWAA polls the bucket for new DAGs itself.
  bucket        = var.bucket
  force_destroy = var.force_destroy

  tags = merge(var.tags, { Name = var.bucket })
}

resource "aws_s3_bucket_ownership_controls" "dags" {
  bucket = aws_s3_bucket.dags.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# MWAA refuses a source bucket that public access could reach.
resource "aws_s3_bucket_public_access_block" "dags" {
  bucket = aws_s3_bucket.dags.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# MWAA requires versioning: the environment pins requirements.txt and plugins.zip by version.
resource "aws_s3_bucket_versioning" "dags" {
  bucket = aws_s3_bucket.dags.id

  versioning_configuration {
    status = "Enabled"
  }
}

# SSE-S3 without a customer key: MWAA wants the bucket's KMS key to be the environment's, and the
# environment's AWS owned key cannot be a bucket's. With kms_key_arn both use that key (SSE-KMS).
resource "aws_s3_bucket_server_side_encryption_configuration" "dags" {
  bucket = aws_s3_bucket.dags.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "dags" {
  bucket = aws_s3_bucket.dags.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Lifecycle rules on noncurrent versions need versioning first.
  depends_on = [aws_s3_bucket_versioning.dags]
}

data "aws_iam_policy_document" "tls_only" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "dags" {
  bucket = aws_s3_bucket.dags.id
  policy = data.aws_iam_policy_document.tls_only.json

  # A bucket policy cannot be written while the public access block is being changed.
  depends_on = [aws_s3_bucket_public_access_block.dags]
}

# The DAG folder MWAA reads (dag_s3_path): DAGs go there with `aws s3 sync pipelines/dags s3://<bucket>/dags/`,
# not through Terraform, since MWAA picks a changed DAG up within a minute without an environment update.
resource "aws_s3_object" "dag_folder" {
  bucket       = aws_s3_bucket.dags.id
  key          = "${local.dag_s3_path}/"
  content      = ""
  content_type = "application/x-directory"

  tags = var.tags

  depends_on = [aws_s3_bucket_versioning.dags, aws_s3_bucket_server_side_encryption_configuration.dags]
}

resource "aws_s3_object" "requirements" {
  bucket       = aws_s3_bucket.dags.id
  key          = local.requirements_s3_path
  content      = join("", [for line in concat(["# Written by Terraform (terraform/modules/mwaa, var.requirements)."], var.requirements) : "${line}\n"])
  content_type = "text/plain"

  tags = var.tags

  # The environment pins this object's version, which exists only once versioning is on.
  depends_on = [aws_s3_bucket_versioning.dags, aws_s3_bucket_server_side_encryption_configuration.dags]
}

resource "aws_s3_object" "plugins" {
  count = var.plugins_zip == null ? 0 : 1

  bucket       = aws_s3_bucket.dags.id
  key          = local.plugins_s3_path
  source       = var.plugins_zip
  source_hash  = filemd5(var.plugins_zip)
  content_type = "application/zip"

  tags = var.tags

  depends_on = [aws_s3_bucket_versioning.dags, aws_s3_bucket_server_side_encryption_configuration.dags]
}

# --- the execution role ---

# airflow.amazonaws.com and airflow-env.amazonaws.com assume it, for this environment only (confused
# deputy: another account's environment cannot name this role).
data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "MwaaForThisEnvironment"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.environment_arn]
    }
  }
}

# What MWAA's execution role needs (MWAA's documented policy, narrowed) and one Secrets Manager prefix.
# No statement names the users' data bucket, or any bucket but the DAGs bucket: a pipeline's tasks
# run on the hub as their owner (the owner's role, S3 folder, sizes and budget), through the hub's API
# with the owner's token, so Airflow itself never reads or writes users' data.
data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "PublishTheEnvironmentsHealth"
    actions   = ["airflow:PublishMetrics"]
    resources = [local.environment_arn]
  }

  statement {
    sid     = "ReadTheDagsBucket"
    actions = ["s3:GetObject*", "s3:GetBucket*", "s3:List*"]
    resources = [
      local.bucket_arn,
      "${local.bucket_arn}/*",
    ]
  }

  # MWAA checks that public access to its bucket is blocked, account-wide settings included; the
  # action has no resource to narrow it to.
  statement {
    sid       = "SeeThatPublicAccessIsBlocked"
    actions   = ["s3:GetAccountPublicAccessBlock"]
    resources = ["*"]
  }

  statement {
    sid = "WriteTheEnvironmentsLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:CreateLogGroup",
      "logs:PutLogEvents",
      "logs:GetLogEvents",
      "logs:GetLogRecord",
      "logs:GetLogGroupFields",
      "logs:GetQueryResults",
    ]
    resources = ["arn:${local.partition}:logs:${local.region}:${var.account_id}:log-group:airflow-${local.environment_name}-*"]
  }

  # DescribeLogGroups lists the account's groups: it takes no narrower resource.
  statement {
    sid       = "FindTheEnvironmentsLogGroups"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["*"]
  }

  # PutMetricData takes no resource; the condition keeps it to Airflow's metrics (namespace AmazonMWAA).
  statement {
    sid       = "PublishAirflowMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["AmazonMWAA"]
    }
  }

  # Celery's queue is MWAA's, in an account of the service's own (which is why the account is "*"):
  # the role may use queues named airflow-celery-* in this region, nothing else of SQS.
  statement {
    sid = "UseTheCeleryQueue"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:ReceiveMessage",
      "sqs:SendMessage",
    ]
    resources = ["arn:${local.partition}:sqs:${local.region}:*:airflow-celery-*"]
  }

  # The queue's messages are encrypted: with the AWS owned key (in the service's account: any key
  # outside this account, through SQS only), or with the customer key, through SQS and S3.
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? ["aws-owned"] : []
    content {
      sid           = "EncryptTheQueueWithTheAwsOwnedKey"
      actions       = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey*", "kms:Encrypt"]
      not_resources = ["arn:${local.partition}:kms:*:${var.account_id}:key/*"]

      condition {
        test     = "StringLike"
        variable = "kms:ViaService"
        values   = ["sqs.${local.region}.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "EncryptWithTheCustomerKey"
      actions   = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey*", "kms:Encrypt"]
      resources = [statement.value]

      condition {
        test     = "StringLike"
        variable = "kms:ViaService"
        values   = ["sqs.${local.region}.amazonaws.com", "s3.${local.region}.amazonaws.com"]
      }
    }
  }

  # The ec2hub connection (hub URL and the pipeline owner's hub token) and any other connection,
  # under one prefix; the trailing "/*" also covers the random suffix Secrets Manager adds to ARNs.
  statement {
    sid       = "ReadConnectionsUnderThePrefix"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = ["arn:${local.partition}:secretsmanager:${local.region}:${var.account_id}:secret:${var.connections_secret_prefix}/*"]
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.environment_name}-execution"
  path               = "/ec2hub/"
  description        = "ec2hub: MWAA ${local.environment_name} (its DAGs bucket, logs, metrics, queue, connections; no users' data)"
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = var.tags
}

resource "aws_iam_role_policy" "execution" {
  name   = "ec2hub-mwaa-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- network: MWAA's workers -> the hub's ports ---

resource "aws_security_group" "mwaa" {
  name_prefix = "${local.environment_name}-"
  description = "ec2hub MWAA: among its own members, HTTPS out, and the hub's API, jobs and gateway ports"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = local.environment_name })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "mwaa_from_itself" {
  for_each = local.mwaa_internal_ports

  security_group_id            = aws_security_group.mwaa.id
  description                  = "MWAA ${each.key} among the environment's own members"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.mwaa.id
}

# HTTPS to the members is in the rule to anywhere below.
resource "aws_vpc_security_group_egress_rule" "mwaa_database" {
  security_group_id            = aws_security_group.mwaa.id
  description                  = "MWAA's metadata database, at its endpoint in the environment's own group"
  ip_protocol                  = "tcp"
  from_port                    = local.mwaa_internal_ports.postgresql
  to_port                      = local.mwaa_internal_ports.postgresql
  referenced_security_group_id = aws_security_group.mwaa.id
}

resource "aws_vpc_security_group_egress_rule" "mwaa_https" {
  security_group_id = aws_security_group.mwaa.id
  description       = "AWS APIs (SQS, CloudWatch, KMS, Secrets Manager, S3) and PyPI, over HTTPS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "webserver" {
  for_each = toset(var.webserver_allowed_cidrs)

  security_group_id = aws_security_group.mwaa.id
  description       = "The Airflow UI's private endpoint, from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "mwaa_to_hub" {
  for_each = var.hub_ports

  security_group_id            = aws_security_group.mwaa.id
  description                  = "To the hub's ${each.key} port"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = var.hub_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "hub_from_mwaa" {
  for_each = var.hub_ports

  security_group_id            = var.hub_security_group_id
  description                  = "The hub's ${each.key} port, from MWAA's workers"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.mwaa.id
}

# --- the environment ---

resource "aws_mwaa_environment" "this" {
  count = var.create_environment ? 1 : 0

  name               = local.environment_name
  airflow_version    = var.airflow_version
  environment_class  = var.environment_class
  min_workers        = 1
  max_workers        = var.max_workers
  execution_role_arn = aws_iam_role.execution.arn
  kms_key            = var.kms_key_arn

  source_bucket_arn              = aws_s3_bucket.dags.arn
  dag_s3_path                    = local.dag_s3_path
  requirements_s3_path           = aws_s3_object.requirements.key
  requirements_s3_object_version = aws_s3_object.requirements.version_id
  plugins_s3_path                = one(aws_s3_object.plugins[*].key)
  plugins_s3_object_version      = one(aws_s3_object.plugins[*].version_id)

  airflow_configuration_options = local.airflow_configuration_options

  # The UI only at a VPC endpoint in the private subnets (webserver_allowed_cidrs reach it).
  webserver_access_mode = "PRIVATE_ONLY"

  network_configuration {
    security_group_ids = [aws_security_group.mwaa.id]
    subnet_ids         = var.subnet_ids
  }

  logging_configuration {
    dag_processing_logs {
      enabled   = true
      log_level = var.log_level
    }
    scheduler_logs {
      enabled   = true
      log_level = var.log_level
    }
    task_logs {
      enabled   = true
      log_level = var.log_level
    }
    webserver_logs {
      enabled   = true
      log_level = var.log_level
    }
    worker_logs {
      enabled   = true
      log_level = var.log_level
    }
  }

  tags = var.tags

  depends_on = [
    # MWAA checks at creation that it can read the bucket, write its logs and use its queue: the
    # role's policy and the bucket's settings come first.
    aws_iam_role_policy.execution,
    aws_s3_bucket_public_access_block.dags,
    aws_s3_bucket_policy.dags,
    aws_s3_object.dag_folder,
    # Its workers reach the hub from their first task.
    aws_vpc_security_group_ingress_rule.hub_from_mwaa,
    aws_vpc_security_group_egress_rule.mwaa_to_hub,
    aws_vpc_security_group_ingress_rule.mwaa_from_itself,
    aws_vpc_security_group_egress_rule.mwaa_database,
    aws_vpc_security_group_egress_rule.mwaa_https,
  ]
}
