output "hub_environment" {
  description = "The EC2HUB_* variables the hub runs with."
  value       = module.ec2hub.hub_environment
}

output "hub_url_target" {
  description = "Point the certificate's domain at this DNS name (CNAME or Route 53 alias)."
  value       = module.ec2hub.hub_url_target
}

output "hub_instance_id" {
  description = "The hub instance: `aws ssm start-session --target <id>` reaches it (first admin password, logs)."
  value       = module.ec2hub.hub_instance_id
}
