provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = "ec2hub"
      ManagedBy = "terraform"
    }
  }
}

module "ec2hub" {
  source = "../../"

  name          = "ec2hub"
  user_ami_id   = var.user_ami_id
  hub_image     = var.hub_image
  allowed_cidrs = var.allowed_cidrs
  alarm_emails  = var.alarm_emails

  # The hub at https://<domain>/, each user's server on a host of its own (https://<user>.<domain>/):
  # Terraform makes the certificate for the domain and its wildcard and points both at the hub.
  domain_name     = var.domain_name
  route53_zone_id = var.route53_zone_id

  hub_environment = {
    EC2HUB_AUTH       = "signup"
    EC2HUB_ADMIN_USER = "admin"
  }

  # Secrets go to SSM Parameter Store, never into hub_environment: the proxy's token here (with
  # EC2HUB_AUTH = "oauth", also hub_oauth_client_secret and `oauth_client_secret = 1` below). Terraform
  # keeps no copy of a secret: raise its number when you give it a new value, so that it is written.
  hub_proxy_auth_token   = var.hub_proxy_auth_token
  hub_parameter_versions = { proxy_auth_token = 1 }
}
