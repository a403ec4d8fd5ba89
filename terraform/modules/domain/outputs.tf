output "certificate_arn" {
  description = "ARN of the validated certificate for the domain and its wildcard (the load balancer's HTTPS listener)."
  value       = aws_acm_certificate_validation.hub.certificate_arn
}

output "subdomain_host" {
  description = "EC2HUB_SUBDOMAIN_HOST of the hub: https://<domain>."
  value       = "https://${var.domain_name}"
}
