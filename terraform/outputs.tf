output "hub_environment" {
  description = "The EC2HUB_* variables the hub reads (hub/settings.py), as the hub instance gets them."
  value       = module.hub.hub_environment
}

output "aws_region" {
  description = "EC2HUB_AWS_REGION: the region of the deployment."
  value       = data.aws_region.current.name
}

output "ami_id" {
  description = "EC2HUB_AMI_ID: the AMI of user instances."
  value       = var.user_ami_id
}

output "subnet_ids" {
  description = "EC2HUB_SUBNET_IDS: the private subnets user instances run in."
  value       = module.network.private_subnet_ids
}

output "security_group_ids" {
  description = "EC2HUB_SECURITY_GROUP_IDS: the groups of every instance the hub launches: the user group (8888 from the hub only)."
  value       = module.hub.instance_security_group_ids
}

output "cluster_security_group_id" {
  description = "EC2HUB_CLUSTER_SECURITY_GROUP_IDS: the group Dask schedulers and workers carry beside the user group (Dask among them, schedulers from the hub)."
  value       = module.hub.cluster_security_group_id
}

output "bucket" {
  description = "EC2HUB_BUCKET: the data bucket."
  value       = module.storage.bucket
}

output "user_boundary_arn" {
  description = "EC2HUB_USER_BOUNDARY_ARN: the permissions boundary of user roles."
  value       = module.iam.user_boundary_arn
}

output "hub_id" {
  description = "EC2HUB_HUB_ID: the `ec2hub:hub` tag of this hub's instances."
  value       = local.hub_id
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = module.network.vpc_id
}

output "hub_role_arn" {
  description = "ARN of the hub's IAM role."
  value       = module.iam.hub_role_arn
}

output "hub_url_target" {
  description = "DNS name of the load balancer: point the hub's domain at it, then open https://<domain>/."
  value       = module.hub.alb_dns_name
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.monitoring.alarm_topic_arn
}

output "job_failures_alarm_name" {
  description = "CloudWatch alarm on failed notebook job runs (namespace ec2hub/jobs, metric FailedRuns, dimension HubId); it notifies the alarm topic."
  value       = module.monitoring.job_failures_alarm_name
}

output "hub_instance_id" {
  description = "ID of the hub instance (Session Manager target: `aws ssm start-session --target <id>`); null without create_hub_instance."
  value       = module.hub.hub_instance_id
}

output "budget_name" {
  description = "Name of the monthly AWS Budgets budget on the hub's spend (monthly_budget_usd); null without it."
  value       = module.costs.budget_name
}

output "mwaa_bucket" {
  description = "MWAA's DAGs bucket (`aws s3 sync pipelines/dags s3://<bucket>/dags/`); null without mwaa_enabled."
  value       = one(module.mwaa[*].bucket)
}

output "mwaa_environment_name" {
  description = "Name of the MWAA environment; null without mwaa_enabled."
  value       = one(module.mwaa[*].environment_name)
}

output "mwaa_webserver_url" {
  description = "Host of the private Airflow UI; null without mwaa_enabled or mwaa.create_environment."
  value       = one(module.mwaa[*].webserver_url)
}

output "mwaa_execution_role_arn" {
  description = "ARN of MWAA's execution role; null without mwaa_enabled."
  value       = one(module.mwaa[*].execution_role_arn)
}

output "mwaa_security_group_id" {
  description = "Security group of MWAA's workers, which the hub's group admits on its API, jobs and Dask gateway ports; null without mwaa_enabled."
  value       = one(module.mwaa[*].security_group_id)
}

output "mwaa_connections_secret_prefix" {
  description = "Secrets Manager prefix of Airflow's connections on MWAA (the ec2hub connection: `<prefix>/ec2hub_default`); null without mwaa_enabled."
  value       = one(module.mwaa[*].connections_secret_prefix)
}
