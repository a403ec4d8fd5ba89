output "hub_role_arn" {
  description = "ARN of the hub's role."
  value       = aws_iam_role.hub.arn
}

output "hub_role_name" {
  description = "Name of the hub's role."
  value       = aws_iam_role.hub.name
}

output "hub_instance_profile_name" {
  description = "Name of the hub's instance profile."
  value       = aws_iam_instance_profile.hub.name
}

output "user_boundary_arn" {
  description = "ARN of the user permissions boundary (EC2HUB_USER_BOUNDARY_ARN)."
  value       = aws_iam_policy.user_boundary.arn
}

output "account_id" {
  description = "The AWS account the resources were created in."
  value       = data.aws_caller_identity.current.account_id
}
