output "log_group_name" {
  description = "Name of the hub's CloudWatch Logs group."
  value       = aws_cloudwatch_log_group.hub.name
}

output "alarm_topic_arn" {
  description = "ARN of the SNS topic the alarms notify."
  value       = aws_sns_topic.alarms.arn
}

output "job_failures_alarm_name" {
  description = "Name of the alarm on failed notebook job runs (ec2hub/jobs FailedRuns of this hub)."
  value       = aws_cloudwatch_metric_alarm.job_failures.alarm_name
}

output "alarm_names" {
  description = "Names of the alarms: hub down (with a load balancer), spawn failures, job failures, running vCPUs."
  value = concat(aws_cloudwatch_metric_alarm.hub_down[*].alarm_name, [
    aws_cloudwatch_metric_alarm.spawn_failures.alarm_name,
    aws_cloudwatch_metric_alarm.job_failures.alarm_name,
    aws_cloudwatch_metric_alarm.instance_count.alarm_name,
  ])
}
