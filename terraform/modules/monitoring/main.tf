resource "aws_cloudwatch_log_group" "hub" {
  #checkov:skip=CKV_AWS_158:The hub log holds no secrets (tokens never reach it); the AWS-owned key CloudWatch Logs always encrypts with is enough, and a customer key adds cost and a key policy to run.
  name              = var.log_group_name
  retention_in_days = var.log_retention_days

  tags = var.tags
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = "alias/aws/sns"

  tags = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alarm_emails)

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

# Only for a hub behind the module's load balancer: its target group's health is the hub's health.
resource "aws_cloudwatch_metric_alarm" "hub_down" {
  count = var.alb_arn_suffix != null && var.target_group_arn_suffix != null ? 1 : 0

  alarm_name          = "${var.name}-hub-down"
  alarm_description   = "The hub answers no health check (/hub/health through the load balancer): nobody can sign in or start a server."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  dimensions = {
    LoadBalancer = var.alb_arn_suffix
    TargetGroup  = var.target_group_arn_suffix
  }
  alarm_actions = [aws_sns_topic.alarms.arn]
  ok_actions    = [aws_sns_topic.alarms.arn]

  tags = var.tags
}

# JupyterHub logs every failed start of a server ("Unhandled error starting ..." or
# "... failed to start"); counting those lines is the spawn-failure metric.
resource "aws_cloudwatch_log_metric_filter" "spawn_failures" {
  name           = "${var.name}-spawn-failures"
  log_group_name = aws_cloudwatch_log_group.hub.name
  pattern        = "?\"Unhandled error starting\" ?\"failed to start\""

  metric_transformation {
    name          = "SpawnFailures"
    namespace     = "ec2hub/${var.name}"
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_metric_alarm" "spawn_failures" {
  alarm_name          = "${var.name}-spawn-failures"
  alarm_description   = "User servers fail to start (capacity, AMI, IAM or network): look at the hub log."
  namespace           = "ec2hub/${var.name}"
  metric_name         = aws_cloudwatch_log_metric_filter.spawn_failures.metric_transformation[0].name
  statistic           = "Sum"
  period              = 900
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.spawn_failure_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]

  tags = var.tags
}

# The jobs service (hub/jobs) publishes FailedRuns = 1 to ec2hub/jobs, per hub, for each run of a
# notebook job that fails; the hub's role may publish to that namespace only.
resource "aws_cloudwatch_metric_alarm" "job_failures" {
  alarm_name          = "${var.name}-job-failures"
  alarm_description   = "A notebook job's run failed (its notebook raised, it ran past its timeout, or its instance could not launch or ended early): the job's status message says why, the hub log says more."
  namespace           = "ec2hub/jobs"
  metric_name         = "FailedRuns"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  dimensions = {
    HubId = var.hub_id
  }
  alarm_actions = [aws_sns_topic.alarms.arn]

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "instance_count" {
  alarm_name          = "${var.name}-running-vcpus"
  alarm_description   = "More on-demand vCPUs run in this region than expected: forgotten or runaway user instances cost money."
  namespace           = "AWS/Usage"
  metric_name         = "ResourceCount"
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.max_running_vcpus
  treat_missing_data  = "notBreaching"
  dimensions = {
    Service  = "EC2"
    Type     = "Resource"
    Resource = "vCPU"
    Class    = "Standard/OnDemand"
  }
  alarm_actions = [aws_sns_topic.alarms.arn]

  tags = var.tags
}
