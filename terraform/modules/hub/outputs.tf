output "user_security_group_id" {
  description = "Security group of user instances (EC2HUB_SECURITY_GROUP_IDS): the server port from the hub only."
  value       = aws_security_group.users.id
}

output "cluster_security_group_id" {
  description = "Security group of Dask cluster traffic (EC2HUB_CLUSTER_SECURITY_GROUP_IDS), which Dask schedulers and workers carry beside the user group."
  value       = aws_security_group.cluster.id
}

output "instance_security_group_ids" {
  description = "Security groups of every instance the hub launches (EC2HUB_SECURITY_GROUP_IDS): the user group."
  value       = local.instance_security_group_ids
}

output "hub_environment" {
  description = "The EC2HUB_* variables of the hub container: `hub_environment` with the security groups, the Dask gateway ports and the jobs port."
  value       = local.environment
}

output "hub_security_group_id" {
  description = "Security group of the hub instance."
  value       = aws_security_group.hub.id
}

output "alb_dns_name" {
  description = "DNS name of the load balancer: point the hub's domain (CNAME or alias) at it."
  value       = one(aws_lb.hub[*].dns_name)
}

output "alb_zone_id" {
  description = "Route 53 zone ID of the load balancer, for alias records of the hub's domain."
  value       = one(aws_lb.hub[*].zone_id)
}

output "alb_arn_suffix" {
  description = "ARN suffix of the load balancer (CloudWatch dimension)."
  value       = one(aws_lb.hub[*].arn_suffix)
}

output "target_group_arn_suffix" {
  description = "ARN suffix of the hub's target group (CloudWatch dimension)."
  value       = one(aws_lb_target_group.hub[*].arn_suffix)
}

output "hub_instance_id" {
  description = "ID of the hub instance."
  value       = one(aws_instance.hub[*].id)
}

output "database_volume_id" {
  description = "ID of the encrypted EBS volume with the hub's database."
  value       = one(aws_ebs_volume.database[*].id)
}

output "secret_parameter_arns" {
  description = "ARNs of the SSM parameters with the hub's secrets (only the hub's role may read them)."
  value       = [for parameter in aws_ssm_parameter.secret : parameter.arn]
}
